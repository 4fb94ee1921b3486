"""Batches from the client side: expand patterns, upload items once, start the batch,
follow it, and bring each item's outputs home into its own directory."""

from __future__ import annotations

import asyncio
import glob
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import CancelledError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from rgrid import names
from rgrid.client import file_args, submit
from rgrid.client.history import started_input
from rgrid.client.outputs import download_outputs
from rgrid.client.session import Session
from rgrid.errors import NotFoundError, UserInputError
from rgrid.models.batch import (
    BatchInput,
    BatchItem,
    BatchProgress,
    BatchSpec,
    BatchState,
    RetryFailedInput,
    RetryFailedResult,
)
from rgrid.models.execution import ExecutionStatus, Phase
from rgrid.workflows.visibility import batch_summary

UPLOAD_CONCURRENCY = 8


def expand_patterns(patterns: list[str], cwd: Path) -> list[Path]:
    """Files matched by the patterns (`**` recursive), sorted and de-duplicated."""
    found: dict[Path, Path] = {}
    for pattern in patterns:
        full = pattern if Path(pattern).is_absolute() else str(cwd / pattern)
        matches = sorted(glob.glob(full, recursive=True))
        if not matches:
            raise UserInputError(
                f"--batch {pattern!r} matches no files",
                "check the pattern, and quote it so the shell does not expand it",
            )
        for match in matches:
            path = Path(match)
            if path.is_dir():
                raise UserInputError(
                    f"--batch {pattern!r} matches a directory: {path}",
                    "narrow the pattern to files, e.g. 'data/*.csv'",
                )
            found.setdefault(path.resolve(), path)
    return sorted(found.values(), key=lambda p: str(p))


def output_dirs(paths: list[Path]) -> list[str]:
    """Each input's output dir: its stem, or its full name where stems collide."""
    stems = Counter(path.stem for path in paths)
    chosen = [path.stem if stems[path.stem] == 1 else path.name for path in paths]
    repeated = [name for name, count in Counter(chosen).items() if count > 1]
    if repeated:
        same = [str(p) for p in paths if p.name == repeated[0]][:3]
        raise UserInputError(
            f"{Counter(chosen)[repeated[0]]} inputs are named {repeated[0]!r} "
            f"(e.g. {', '.join(same)}), so their outputs would mix",
            "rename them or narrow the --batch patterns",
        )
    return chosen


def manifest_key(batch_id: str) -> str:
    """Where a batch's item list is stored."""
    return f"batches/{batch_id}/items.json"


@dataclass
class PreparedBatch:
    batch_id: str
    spec: BatchSpec
    items: list[BatchItem]
    report: submit.UploadReport


async def prepare(
    session: Session,
    request: submit.RunRequest,
    patterns: list[str],
    parallel: int,
    fail_fast: bool,
    cwd: Path,
    on_upload: Callable[[int], None] | None = None,
) -> PreparedBatch:
    """Validate everything, then upload the script, shared inputs and every item once."""
    if parallel < 1:
        raise UserInputError(f"--parallel {parallel} is not allowed", "use 1 or more")
    paths = expand_patterns(patterns, cwd)
    dirs = output_dirs(paths)
    for path in paths:
        file_args.check_readable(path, "batch input")
    template, report = await submit.prepare(session, request, cwd)
    semaphore = asyncio.Semaphore(UPLOAD_CONCURRENCY)

    async def upload(path: Path) -> submit.FileRef:
        async with semaphore:
            refs, one = await submit.upload_files(
                session.storage, {file_args.staged_name(path, cwd): path}
            )
        report.uploaded += one.uploaded
        report.uploaded_bytes += one.uploaded_bytes
        report.already_stored += one.already_stored
        if on_upload is not None:
            on_upload(1)
        return refs[0]

    refs = await asyncio.gather(*(upload(path) for path in paths))
    items = [
        BatchItem(index=i, input=ref, output_dir=out)
        for i, (ref, out) in enumerate(zip(refs, dirs, strict=True))
    ]
    batch_id = names.new_batch_id()
    key = manifest_key(batch_id)
    await session.storage.put_bytes(
        key, json.dumps([item.model_dump(mode="json") for item in items]).encode()
    )
    spec = BatchSpec(
        template=template,
        total=len(items),
        manifest_key=key,
        parallel=parallel,
        fail_fast=fail_fast,
        page_size=session.settings.batch_page_size,
        patterns=patterns,
    )
    return PreparedBatch(batch_id=batch_id, spec=spec, items=items, report=report)


async def start(
    session: Session, batch_id: str, spec: BatchSpec, state: BatchState | None = None
) -> WorkflowHandle[Any, BatchProgress]:
    """Start (or, with a state, restart) the BatchWorkflow."""
    client = await session.temporal()
    return await client.start_workflow(
        "BatchWorkflow",
        BatchInput(spec=spec, state=state),
        id=batch_id,
        task_queue=names.CONTROL_QUEUE,
        result_type=BatchProgress,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(names.PROJECT_ATTRIBUTE, spec.template.project),
                SearchAttributePair(names.SCRIPT_ATTRIBUTE, spec.template.script.name),
                SearchAttributePair(names.BATCH_ID_ATTRIBUTE, batch_id),
            ]
        ),
        static_summary=batch_summary(spec),
    )


async def progress(session: Session, batch_id: str) -> BatchProgress:
    """The batch's progress, live while it runs and final after."""
    client = await session.temporal()
    handle = client.get_workflow_handle(batch_id, result_type=BatchProgress)
    try:
        return await handle.query("progress", result_type=BatchProgress)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise NotFoundError(f"no batch {batch_id!r}", "see `rgrid list --batches`") from err
        raise


async def failed_items(session: Session, batch_id: str, items: list[BatchItem]) -> list[BatchItem]:
    """The items whose latest try did not succeed: what a retry runs again."""
    latest = latest_per_item(await (await session.ledger()).of_batch(batch_id))
    return [
        item
        for item in items
        if item.index in latest
        and latest[item.index].phase.terminal
        and latest[item.index].phase is not Phase.SUCCEEDED
    ]


async def follow(
    session: Session,
    batch_id: str,
    on_progress: Callable[[BatchProgress], Awaitable[None]],
    poll_s: float = 0.5,
) -> BatchProgress:
    """Report progress until the batch ends; its final progress. Rides out a control
    plane that is briefly away (session.blips)."""
    client = await session.blips.call(session.temporal)
    handle = client.get_workflow_handle(batch_id, result_type=BatchProgress)

    async def until_the_end() -> BatchProgress:
        result = asyncio.create_task(_final(handle))
        try:
            while not result.done():
                await on_progress(await handle.query("progress", result_type=BatchProgress))
                await asyncio.wait({result}, timeout=poll_s)
            return result.result()
        finally:
            result.cancel()

    final = await session.blips.call(until_the_end)
    await on_progress(final)
    return final


async def _final(handle: WorkflowHandle[Any, BatchProgress]) -> BatchProgress:
    try:
        return await handle.result()
    except WorkflowFailureError as err:
        if not isinstance(err.cause, CancelledError):
            raise
        return await cancelled_progress(handle)


async def start_riding_out(
    session: Session, batch_id: str, spec: BatchSpec
) -> WorkflowHandle[Any, BatchProgress]:
    """Start the batch, retrying while the control plane is away; a retry whose first
    try got through finds the batch started."""

    async def once() -> WorkflowHandle[Any, BatchProgress]:
        try:
            return await start(session, batch_id, spec)
        except WorkflowAlreadyStartedError:
            client = await session.temporal()
            return client.get_workflow_handle(batch_id, result_type=BatchProgress)

    return await session.blips.call(once)


async def cancelled_progress(handle: WorkflowHandle[Any, BatchProgress]) -> BatchProgress:
    """A cancelled batch's last progress (a query replays it to its cancellation)."""
    final = await handle.query("progress", result_type=BatchProgress)
    return final.model_copy(update={"cancelled": True, "done": True})


def latest_per_item(executions: list[ExecutionStatus]) -> dict[int, ExecutionStatus]:
    """The newest execution of each item (a retry supersedes the try before it)."""
    latest: dict[int, ExecutionStatus] = {}
    for execution in executions:  # oldest first
        if execution.batch_item is not None:
            latest[execution.batch_item] = execution
    return latest


async def load_items(session: Session, batch_id: str) -> list[BatchItem]:
    """The batch's items from its manifest."""
    raw = json.loads(await session.storage.get_bytes(manifest_key(batch_id)))
    return [BatchItem.model_validate(item) for item in raw]


async def download(
    session: Session, batch_id: str, items: list[BatchItem], target: Path, flat: bool
) -> tuple[int, list[str]]:
    """Each item's outputs into target/<item>/ (or target/<item>_<name> when flat)."""
    ledger = await session.ledger()
    latest = latest_per_item(await ledger.of_batch(batch_id))
    written = 0
    refused: list[str] = []
    for item in items:
        execution = latest.get(item.index)
        if execution is None or not execution.outputs:
            continue
        where = target if flat else target / item.output_dir
        prefix = f"{item.output_dir}_" if flat else ""
        paths, bad = await download_outputs(session.storage, execution, where, prefix)
        written += len(paths)
        refused += bad
    return written, refused


async def retry_failed(session: Session, batch_id: str) -> int:
    """Re-run the batch's failed items inside the same batch; how many were requeued.

    A running batch takes them through its `retry_failed` update; a finished one is
    started again under the same id, resuming from its final state."""
    client = await session.temporal()
    handle = client.get_workflow_handle(batch_id, result_type=BatchProgress)
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise NotFoundError(f"no batch {batch_id!r}", "see `rgrid list --batches`") from err
        raise
    if description.status == WorkflowExecutionStatus.RUNNING:
        try:
            result = await handle.execute_update(
                "retry_failed", RetryFailedInput(), result_type=RetryFailedResult
            )
        except WorkflowUpdateFailedError as err:
            raise UserInputError(f"{batch_id} has no failed items", "nothing to retry") from err
        return result.requeued
    final = await handle.result()
    state = final.state
    if state is None or not state.failed:
        raise UserInputError(f"{batch_id} has no failed items", "nothing to retry")
    requeued = len(state.failed)
    state.retry_queue.extend(state.failed)
    state.failed.clear()
    state.stopped = False
    spec = (await started_input(client, batch_id, BatchInput)).spec
    await start(session, batch_id, spec, state)
    return requeued
