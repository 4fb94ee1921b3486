"""Following an execution: its logs from storage while it runs, and its final status."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from rgrid.client.session import Session
from rgrid.client.waiting import WaitReport, wait_report
from rgrid.errors import NotFoundError, RgridError
from rgrid.infra.logstore import LogRecord, read_new_records
from rgrid.models.execution import ExecutionStatus, Phase

POLL_S = 0.2
WAIT_REPORT_S = 2.0  # a queued run is explained within this (and kept current)

RecordSink = Callable[[LogRecord], None]


async def wait_for_result(
    session: Session,
    execution_id: str,
    sink: RecordSink | None = None,
    on_wait: Callable[[WaitReport], None] | None = None,
) -> ExecutionStatus:
    """Stream logs to `sink` (if given) until the execution ends; return its final status.

    Rides out a control plane that is briefly away (session.blips): the logs go on from
    the last record shown, and the result is asked again. While the run is queued,
    `on_wait` gets a report of why every WAIT_REPORT_S."""
    client = await session.blips.call(session.temporal)
    handle = client.get_workflow_handle(execution_id, result_type=ExecutionStatus)
    seen: set[str] = set()

    async def stream() -> None:
        if sink is not None:
            for record in await read_new_records(session.storage, execution_id, seen):
                sink(record)

    loop = asyncio.get_running_loop()
    next_report = loop.time() + WAIT_REPORT_S

    async def until_the_end() -> ExecutionStatus:
        nonlocal next_report
        result = asyncio.create_task(_outcome(session, handle, execution_id))
        try:
            while not result.done():
                await asyncio.wait({result}, timeout=POLL_S)
                await stream()
                if on_wait is not None and loop.time() >= next_report and not result.done():
                    next_report = loop.time() + WAIT_REPORT_S
                    await _report_wait(session, handle, on_wait)
            return result.result()
        finally:
            result.cancel()

    status = await session.blips.call(until_the_end)
    await session.blips.call(stream)  # chunks flushed just before the end
    if sink is not None:
        await replay_logs(session, status, sink)
    return status


async def _report_wait(
    session: Session,
    handle: WorkflowHandle[Any, ExecutionStatus],
    on_wait: Callable[[WaitReport], None],
) -> None:
    try:
        status = await handle.query("status", result_type=ExecutionStatus)
    except WorkflowQueryFailedError:
        return  # no worker answers queries just now; the next round asks again
    if status.phase is Phase.QUEUED:
        on_wait(await wait_report(session, status))


async def _outcome(
    session: Session, handle: WorkflowHandle[Any, ExecutionStatus], execution_id: str
) -> ExecutionStatus:
    try:
        return await handle.result()
    except WorkflowFailureError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.details:
            return ExecutionStatus.model_validate(cause.details[0])
        return await (await session.ledger()).get(execution_id)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise NotFoundError(f"no execution {execution_id!r}", "see `rgrid list`") from err
        raise


async def replay_logs(session: Session, status: ExecutionStatus, sink: RecordSink) -> None:
    """A run served from the cache shows the output of the run it was served from."""
    if status.cached_from is not None:
        for record in await read_new_records(session.storage, status.cached_from, set()):
            sink(record)


async def current_status(session: Session, execution_id: str) -> ExecutionStatus:
    """The ledger's record, with the live phase from the workflow while it runs."""
    status = await (await session.ledger()).get(execution_id)
    if status.phase.terminal:
        return status
    try:
        client = await session.temporal()
        handle = client.get_workflow_handle(execution_id)
        return await handle.query("status", result_type=ExecutionStatus)
    except (RPCError, RgridError, WorkflowQueryFailedError):
        return status  # the ledger's answer is still right, only older


async def follow_logs(session: Session, execution_id: str, sink: RecordSink, follow: bool) -> None:
    """Everything logged so far; with follow, keep tailing until the execution ends."""
    seen: set[str] = set()

    async def stream() -> None:
        for record in await read_new_records(session.storage, execution_id, seen):
            sink(record)

    await session.blips.call(stream)
    if not follow:
        return
    client = await session.blips.call(session.temporal)
    handle = client.get_workflow_handle(execution_id)
    while True:
        description = await session.blips.call(handle.describe)
        await session.blips.call(stream)
        if description.status != WorkflowExecutionStatus.RUNNING:
            await session.blips.call(stream)
            return
        await asyncio.sleep(POLL_S)


async def cancel(session: Session, execution_id: str, wait_s: float = 30.0) -> ExecutionStatus:
    """Request cancellation and wait (bounded) until the execution has stopped."""
    client = await session.temporal()
    handle = client.get_workflow_handle(execution_id)
    try:
        await handle.cancel()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise NotFoundError(f"no execution {execution_id!r}", "see `rgrid list`") from err
        raise
    ledger = await session.ledger()
    deadline = asyncio.get_running_loop().time() + wait_s
    while asyncio.get_running_loop().time() < deadline:
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            break
        await asyncio.sleep(POLL_S)
    try:
        return await ledger.get(execution_id)
    except NotFoundError:
        return ExecutionStatus(execution_id=execution_id, phase=Phase.CANCELLED)
