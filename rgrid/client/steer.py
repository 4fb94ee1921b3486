"""Steering a running batch: the signals its workflow takes (`set_parallel`, `pause`,
`resume`) and cancellation, each sent once; the caller watches progress for the effect."""

from __future__ import annotations

from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from rgrid.client.session import Session
from rgrid.errors import NotFoundError, UserInputError
from rgrid.models.batch import SetParallelInput


async def _handle(session: Session, batch_id: str) -> WorkflowHandle[object, object]:
    if not batch_id.startswith("batch-"):
        raise UserInputError(f"{batch_id!r} is not a batch id", "batch ids start with batch-")
    return (await session.temporal()).get_workflow_handle(batch_id)


async def _send(session: Session, batch_id: str, signal: str, *args: object) -> None:
    handle = await _handle(session, batch_id)
    try:
        await handle.signal(signal, *args)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise NotFoundError(
                f"batch {batch_id!r} is not running", "only a running batch can be steered"
            ) from err
        raise


async def set_parallel(session: Session, batch_id: str, parallel: int) -> None:
    """Raise or lower how many items run at once."""
    if parallel < 1:
        raise UserInputError(f"parallel {parallel} is not allowed", "use 1 or more")
    await _send(session, batch_id, "set_parallel", SetParallelInput(parallel=parallel))


async def pause(session: Session, batch_id: str) -> None:
    """Start no new items; running ones go on."""
    await _send(session, batch_id, "pause")


async def resume(session: Session, batch_id: str) -> None:
    """Start items again after a pause."""
    await _send(session, batch_id, "resume")


async def request_cancel(session: Session, workflow_id: str) -> None:
    """Ask Temporal to cancel a batch or an execution; returns without waiting for it."""
    handle = (await session.temporal()).get_workflow_handle(workflow_id)
    try:
        await handle.cancel()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise NotFoundError(f"no {workflow_id!r} is running", "it may have ended") from err
        raise
