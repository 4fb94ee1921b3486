"""Why a run is still queued: roughly where it stands in the queue, how many nodes of its
class poll for work now, and, when none does, why (what the embedded stack's supervisor
recorded about its agents: the last line one wrote before it exited, and its log)."""

from __future__ import annotations

import json
import time

from pydantic import BaseModel
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from rgrid import names
from rgrid.client.queue import waiting_in_order
from rgrid.client.session import Session
from rgrid.models.execution import ExecutionStatus

# A poller's last access is when its long poll (up to a minute) began; older is gone.
POLLER_FRESH_S = 90


class WaitReport(BaseModel):
    """What `rgrid run`, `rgrid watch` and `rgrid status` say about a queued run."""

    node_class: str
    ahead: int  # estimate: runs of its class dispatched before it (rgrid.client.queue)
    polling: int  # nodes of the class with a free slot: polled its queue in POLLER_FRESH_S
    why: str | None = None  # when none polls: what the supervisor recorded, if anything

    def line(self) -> str:
        """One line for humans."""
        place = f"~{self.ahead} run(s) ahead of it (estimate)"
        if self.polling:
            polled = f"{self.polling} polling (seen in the last {POLLER_FRESH_S} s)"
            return f"waiting for a {self.node_class!r} node: {polled}; {place}"
        reason = self.why or "every node is busy, or none runs (see `rgrid nodes`)"
        return f"waiting for a {self.node_class!r} node: none is polling: {reason}; {place}"


async def wait_report(session: Session, status: ExecutionStatus) -> WaitReport:
    """The wait report of a queued execution (its class from the live status)."""
    node_class = status.node_class or session.settings.node_class
    client = await session.temporal()
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=names.shared_node_queue(node_class)),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        )
    )
    now = time.time()
    polling = {
        poller.identity
        for poller in described.pollers
        if now - poller.last_access_time.ToSeconds() < POLLER_FRESH_S
    }
    # Ahead of it: the runs the queue's rule (priority, fair shares) dispatches first.
    ordered = [run.execution_id for run in await waiting_in_order(session, node_class)]
    ahead = ordered.index(status.execution_id) if status.execution_id in ordered else len(ordered)
    why = None if polling else _agents_exited(session)
    return WaitReport(node_class=node_class, ahead=ahead, polling=len(polling), why=why)


def _agents_exited(session: Session) -> str | None:
    """What the embedded stack's supervisor recorded (dev/children.json) about agents
    that are not running: their last exit line and log. None when it records none."""
    path = session.settings.dev_dir / "children.json"
    try:
        children = json.loads(path.read_text()).get("children", [])
    except (OSError, ValueError, AttributeError):
        return None
    reasons = []
    for child in children:
        if not isinstance(child, dict) or child.get("kind") != "agent":
            continue
        if child.get("state") == "running" and child.get("ready"):
            continue
        said = child.get("last_exit_reason") or "no exit recorded"
        reasons.append(f"{child.get('name')} {child.get('state')}: {said} (log {child.get('log')})")
    return "; ".join(reasons) or None
