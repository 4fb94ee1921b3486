"""The control worker's watch over spending limits: notice crossings, start their alerts.

Spend grows when executions end and while nodes idle, so the watch looks on a timer
rather than only when a run ends. Commands notice crossings too (and refuse runs at
100 %); whoever notices first records it, and this watch starts its AlertWorkflow.
"""

from __future__ import annotations

import asyncio

import structlog
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from rgrid.activities.costs import limit_statuses, record_crossings
from rgrid.infra.ledger import Ledger
from rgrid.models.money import LimitAlert
from rgrid.names import CONTROL_QUEUE, alert_workflow_id

log = structlog.get_logger()


async def check_limits_once(
    ledger: Ledger, client: Client, task_queue: str = CONTROL_QUEUE
) -> list[LimitAlert]:
    """Record new crossings; log each crossing not yet logged (whoever noticed it) and
    start an AlertWorkflow for those with a webhook."""
    fresh = await record_crossings(ledger, await limit_statuses(ledger))
    for alert in await ledger.undispatched_alerts():
        log.warning("limit_crossed", **alert.model_dump(mode="json", exclude={"webhook"}))
        if alert.webhook is None:
            await ledger.mark_alert_dispatched(alert.key)
            continue
        try:
            await client.start_workflow(
                "AlertWorkflow",
                alert,
                id=alert_workflow_id(alert.key),
                task_queue=task_queue,
                # The id names the crossing: a second start joins or is refused, never resends.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
        except WorkflowAlreadyStartedError:
            pass  # it ran before; the ledger just did not hear
        await ledger.mark_alert_dispatched(alert.key)
    return fresh


async def watch_limits(
    ledger: Ledger, client: Client, every_s: float, task_queue: str = CONTROL_QUEUE
) -> None:
    """Check the limits every `every_s` seconds until cancelled."""
    while True:
        try:
            await check_limits_once(ledger, client, task_queue)
        except Exception:  # a bad pass must not end the watch; the next one tries again
            log.exception("limit_watch_failed")
        await asyncio.sleep(every_s)
