"""When the embedded stack's supervisor has given up on every local agent, no node will
take a waiting run: each is told so (the `no_capacity` signal) and fails at once, with the
agent's last words, instead of waiting out its queue timeout."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import structlog
from temporalio.service import RPCError

from rgrid.models.pool import NoCapacity
from rgrid.models.stack import ChildState, ChildStatus
from rgrid.worker.supervisor import Supervisor

if TYPE_CHECKING:
    from rgrid.worker.dev import StackProbes

log = structlog.get_logger()

WAITING_RUNS = "WorkflowType = 'ExecutionWorkflow' AND ExecutionStatus = 'Running'"


def given_up_reason(children: list[ChildStatus]) -> str | None:
    """Why no local node will take a run, when the supervisor has given up on every agent."""
    agents = [c for c in children if c.kind == "agent"]
    if not agents or any(c.state is not ChildState.GAVE_UP for c in agents):
        return None
    last = agents[-1]
    return (
        f"the local node agent keeps exiting ({last.last_exit_reason or 'no output'}; "
        f"log {last.log}): `rgrid dev status` shows it, `rgrid dev stop` then "
        "`rgrid dev start` tries again"
    )


async def fail_waiting_runs(
    probes: StackProbes, supervisor: Supervisor, stop: asyncio.Event
) -> None:
    """While every agent is given up, tell each running execution that no node will come
    (the `no_capacity` signal): one waiting for a node fails at once with the reason."""
    while not stop.is_set():
        reason = given_up_reason(supervisor.status())
        if reason is not None and probes.client is not None:
            try:
                async for run in probes.client.list_workflows(WAITING_RUNS):
                    handle = probes.client.get_workflow_handle(run.id)
                    with contextlib.suppress(RPCError):
                        await handle.signal("no_capacity", NoCapacity(message=reason))
            except RPCError as exc:
                log.warning("could_not_fail_waiting_runs", error=str(exc))
        await asyncio.sleep(1.0)
