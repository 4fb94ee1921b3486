"""Everything the console reads or does, through rgrid's client layer and the ledger's read
functions; the only module of the console that imports them, so that a change there is
fixed here once. Nothing here writes SQL."""

from __future__ import annotations

import asyncio
import contextlib
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from temporalio.client import WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.service import RPCError

from rgrid.cache.key import is_secret
from rgrid.client import batch, steer
from rgrid.client import money as client_money
from rgrid.client.history import started_input
from rgrid.client.nodes import NodeView, list_nodes
from rgrid.client.session import Session
from rgrid.client.timeline import Step, timeline
from rgrid.client.watch import current_status
from rgrid.config_parts import StorageConfig
from rgrid.errors import NotFoundError, RgridError, UnsafePathError
from rgrid.infra.ledger.browse import ExecutionFilter, ExecutionPage
from rgrid.infra.logstore import LogRecord, decode_chunk
from rgrid.infra.retention import outputs_expire_at
from rgrid.infra.storage.base import log_prefix, output_prefix, safe_relative
from rgrid.models.batch import BatchItem, BatchProgress
from rgrid.models.execution import ExecutionSpec, ExecutionStatus, OutputFile, Phase
from rgrid.money.breakdown import group_by
from rgrid.money.limits import LimitStatus
from rgrid.money.pricing import format_microns
from rgrid.money.report import CostReport, ExecutionCost, GroupCost

__all__ = [
    "CostReport",
    "ExecutionFilter",
    "ExecutionPage",
    "ExecutionStatus",
    "GroupCost",
    "LimitStatus",
    "NodeView",
    "NotFoundError",
    "OutputFile",
    "Phase",
    "RgridError",
    "Step",
    "UnsafePathError",
    "describe",
    "format_microns",
]

MASK = "••••••"


async def executions_page(
    session: Session, where: ExecutionFilter, offset: int, limit: int
) -> ExecutionPage:
    """A page of the ledger's executions."""
    return await (await session.ledger()).page_executions(where, offset, limit)


async def filter_choices(session: Session) -> tuple[list[str], list[str]]:
    """Projects and scripts to offer in the filters."""
    return await (await session.ledger()).execution_choices()


@dataclass
class ExecutionView:
    """An execution as its page shows it."""

    status: ExecutionStatus
    cost: ExecutionCost
    expires_at: datetime | None
    # Where its outputs are stored: a cached run returns the outputs of its source.
    outputs_of: str


async def _status(session: Session, execution_id: str) -> ExecutionStatus:
    """The ledger's row; a run just started may have none yet: then its workflow's view."""
    try:
        return await (await session.ledger()).get(execution_id)
    except NotFoundError:
        if not execution_id.startswith("exec-"):
            raise
        try:
            client = await session.temporal()
            handle = client.get_workflow_handle(execution_id)
            return await handle.query("status", result_type=ExecutionStatus)
        except (RPCError, WorkflowQueryFailedError):
            raise NotFoundError(
                f"no execution {execution_id!r}", "see the executions page"
            ) from None


async def execution(session: Session, execution_id: str) -> ExecutionView:
    """An execution from the ledger (live phase from its workflow while it runs)."""
    ledger = await session.ledger()
    found = await _status(session, execution_id)
    if not found.phase.terminal:
        with contextlib.suppress(NotFoundError):  # no row yet: the workflow's view stands
            found = await current_status(session, execution_id)
    source = await ledger.get(found.cached_from) if found.cached_from else found
    try:
        cost = await client_money.of_execution(session, execution_id)
    except NotFoundError:  # no ledger row yet: nothing is priced
        cost = ExecutionCost(execution_id=execution_id)
    return ExecutionView(
        status=found,
        cost=cost,
        expires_at=outputs_expire_at(StorageConfig.of(session.settings), source.finished_at),
        outputs_of=found.cached_from or found.execution_id,
    )


def masked_env(env: dict[str, str]) -> dict[str, str]:
    """The environment with every value whose name looks secret replaced by a mask."""
    return {name: MASK if is_secret(name) else value for name, value in env.items()}


@dataclass
class ExecutionDetails:
    """What only Temporal knows: the steps taken and the spec the run was started with."""

    steps: list[Step]
    spec: ExecutionSpec | None
    env: dict[str, str] = field(default_factory=dict)


async def execution_details(session: Session, execution_id: str) -> ExecutionDetails:
    """The timeline and the (masked) spec from the workflow's history."""
    client = await session.temporal()
    steps = await timeline(client, execution_id)
    try:
        spec: ExecutionSpec | None = await started_input(client, execution_id, ExecutionSpec)
    except (NotFoundError, RPCError):
        spec = None
    # Sealed secrets show by name only; plain env values whose names look secret too.
    env = {**masked_env(spec.env), **dict.fromkeys(spec.secrets, MASK)} if spec else {}
    if spec is not None:  # the spec itself never leaves with secret values in it
        spec = spec.model_copy(update={"env": env, "secrets": {}})
    return ExecutionDetails(steps=steps, spec=spec, env=env)


@dataclass
class LogSlice:
    records: list[LogRecord]
    next_chunk: int  # how many chunks have been read: the next request starts there
    finished: bool  # the execution has ended and every chunk was read


async def log_slice(session: Session, execution_id: str, after_chunk: int) -> LogSlice:
    """Log records from chunk number `after_chunk` on, in order."""
    status = await _status(session, execution_id)
    # Read the phase before the chunks: a run that ended before this read wrote its last
    # chunk before ending, so nothing can come after `finished`.
    finished = status.phase.terminal
    source = status.cached_from or execution_id
    chunks = await session.storage.list(log_prefix(source))
    records: list[LogRecord] = []
    for info in chunks[after_chunk:]:
        records.extend(decode_chunk(await session.storage.get_bytes(info.key)))
    return LogSlice(records=records, next_chunk=len(chunks), finished=finished)


def find_output(view: ExecutionView, path: str) -> OutputFile:
    """The output named `path`; a name that could leave the outputs, or that the execution
    did not produce, is refused."""
    safe_relative(path)  # UnsafePathError for absolute paths, `..`, backslashes
    for output in view.status.outputs:
        if output.path == path:
            return output
    raise NotFoundError(f"{view.status.execution_id} has no output {path!r}", "see its page")


async def fetch_output(
    session: Session, view: ExecutionView, output: OutputFile, dest: Path
) -> None:
    """One output into `dest`, checked against the sha256 the node recorded."""
    key = output_prefix(view.outputs_of) + str(safe_relative(output.path))
    await session.storage.get_file(key, dest, sha256=output.sha256)


async def read_output_head(
    session: Session, view: ExecutionView, output: OutputFile, limit: int
) -> bytes:
    """The first `limit` bytes of an output, for previews."""
    key = output_prefix(view.outputs_of) + str(safe_relative(output.path))
    return (await session.storage.get_bytes(key))[:limit]


async def zip_outputs(session: Session, view: ExecutionView, work: Path) -> Path:
    """Every output of the execution in one zip file under `work`."""
    archive = work / f"{view.status.execution_id}-outputs.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for index, output in enumerate(view.status.outputs):
            try:
                name = str(safe_relative(output.path))
            except UnsafePathError:
                continue  # a name that could leave the archive's root is never packed
            part = work / f"part-{index}"
            await fetch_output(session, view, output, part)
            await asyncio.to_thread(bundle.write, part, name)
            part.unlink()
    return archive


async def request_cancel(session: Session, workflow_id: str) -> None:
    """Ask an execution or a batch to stop; the page's polling shows when it has."""
    await steer.request_cancel(session, workflow_id)


def temporal_ui_url(session: Session, workflow_id: str, base: str | None) -> str:
    """The workflow's page in the Temporal Web UI."""
    settings = session.settings
    root = base or f"http://{settings.dev_ip}:{settings.effective_ui_port}"
    return f"{root.rstrip('/')}/namespaces/{settings.temporal_namespace}/workflows/{workflow_id}"


@dataclass
class BatchRow:
    batch_id: str
    status: str
    started: datetime | None
    closed: datetime | None


async def list_batches(session: Session, limit: int = 50) -> list[BatchRow]:
    """Recent batches, newest first, as Temporal knows them."""
    client = await session.temporal()
    found: list[BatchRow] = []
    async for ex in client.list_workflows("WorkflowType = 'BatchWorkflow'", limit=limit):
        status = ex.status.name.lower() if ex.status else "-"
        found.append(BatchRow(ex.id, status, ex.start_time, ex.close_time))
    return found


@dataclass
class ItemRow:
    item: BatchItem
    execution: ExecutionStatus | None

    @property
    def last_stderr(self) -> str:
        """The last stderr line of a failed item, else its error."""
        if self.execution is None:
            return ""
        lines = self.execution.stderr_tail.strip().splitlines()
        return lines[-1] if lines else (self.execution.error or "")


@dataclass
class BatchView:
    progress: BatchProgress
    running: bool  # the workflow runs: it takes signals
    items: list[ItemRow]
    failures: list[ItemRow]


async def batch_view(session: Session, batch_id: str, item_limit: int) -> BatchView:
    """A batch's live progress and its items with their latest executions."""
    client = await session.temporal()
    handle = client.get_workflow_handle(batch_id)
    try:
        description = await handle.describe()
    except RPCError as err:
        raise NotFoundError(f"no batch {batch_id!r}", "see the batches page") from err
    progress = await batch.progress(session, batch_id)
    items = await batch.load_items(session, batch_id)
    latest = batch.latest_per_item(await (await session.ledger()).of_batch(batch_id))
    rows = [ItemRow(item, latest.get(item.index)) for item in items]
    failures = [
        row
        for row in rows
        if row.execution is not None
        and row.execution.phase.terminal
        and row.execution.phase is not Phase.SUCCEEDED
    ]
    return BatchView(
        progress=progress,
        running=description.status == WorkflowExecutionStatus.RUNNING,
        items=rows[:item_limit],
        failures=failures,
    )


async def batch_action(session: Session, batch_id: str, action: str, parallel: int) -> str:
    """Do what a batch page's button asks; what happened, in one line."""
    if action == "retry_failed":
        requeued = await batch.retry_failed(session, batch_id)
        return f"{requeued} failed item(s) queued again"
    if action == "pause":
        await steer.pause(session, batch_id)
        return "paused: no new items start"
    if action == "resume":
        await steer.resume(session, batch_id)
        return "resumed"
    if action == "set_parallel":
        await steer.set_parallel(session, batch_id, parallel)
        return f"parallel set to {parallel}"
    if action == "cancel":
        await steer.request_cancel(session, batch_id)
        return "cancel requested"
    raise NotFoundError(f"no batch action {action!r}", "use the page's buttons")


@dataclass
class CostsView:
    report: CostReport
    by_project: list[GroupCost]
    limits: list[LimitStatus]


async def costs(
    session: Session, since: datetime | None, until: datetime | None, project: str | None
) -> CostsView:
    """The cost report of a window, by day and by project, and every limit."""
    report = await client_money.report(session, since, until, project)
    return CostsView(
        report=report,
        by_project=group_by(report, "project"),
        limits=await client_money.limit_statuses(session),
    )


async def nodes(session: Session) -> list[NodeView]:
    """Every node the ledger knows, live ones with their slot use."""
    return await list_nodes(session, include_deleted=True)


describe = client_money.describe


def now() -> datetime:
    return datetime.now(UTC)
