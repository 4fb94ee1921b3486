"""The node's early word to a batch: an item's script has ended, its outputs are being
collected. The batch then starts its next item at once, so the next claim is already
queued when this item's slot comes free, instead of after the whole wind-down (collect,
the execute task's return, pricing, the item's own report). Best effort: the item's
`item_done` report, from its workflow, still ends the item either way."""

from __future__ import annotations

import asyncio

import structlog
from temporalio import activity
from temporalio.client import Client

from rgrid import names
from rgrid.models.batch import ItemScriptDone
from rgrid.models.execution import ExecutionSpec
from rgrid.models.node import RunResult

log = structlog.get_logger()

_in_flight: set[asyncio.Task[None]] = set()  # kept referenced until sent


def report_script_done(spec: ExecutionSpec, execution_id: str, run: RunResult) -> None:
    """Tell the item's batch, in the background, unless the item may still run again (a
    failure the user asked to retry keeps its place in the batch's window)."""
    if spec.batch_id is None or spec.batch_item is None:
        return
    failed = run.timed_out or run.exit_code != 0
    if failed and spec.retries > 0:
        return
    report = ItemScriptDone(index=spec.batch_item, execution_id=execution_id, failed=failed)
    task = asyncio.create_task(_send(activity.client(), spec.batch_id, report))
    _in_flight.add(task)
    task.add_done_callback(_in_flight.discard)


async def _send(client: Client, batch_id: str, report: ItemScriptDone) -> None:
    try:
        # By workflow id only: the batch may have continued as new since it started this.
        await client.get_workflow_handle(batch_id).signal(names.ITEM_SCRIPT_DONE, report)
    except Exception as exc:  # the batch ended, or Temporal is away: item_done still comes
        log.info("script_done_not_sent", batch=batch_id, error=str(exc))
