"""A batch as one client call: checks → upload items → start → follow → download.

The caller passes BatchEvents to show progress as it happens and renders the
BatchResult it gets back, for humans or as JSON, from that one model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from rgrid.client import batch, submit
from rgrid.client.capacity import Parallelism, effective_parallel
from rgrid.client.run import before_run
from rgrid.client.session import Session
from rgrid.errors import UserInputError
from rgrid.infra.logstore import LogRecord, read_new_records
from rgrid.models.batch import BatchItem, BatchProgress
from rgrid.models.execution import ExecutionStatus, Phase


class BatchEvents(Protocol):
    """What a caller is told while a batch goes on."""

    wants_items: bool  # True: item_ended is called for each item as it ends
    wants_output: bool  # True: item_output streams each item's output as it comes

    def warning(self, line: str) -> None:
        """A spending limit or budget note, before anything is started."""

    def uploading(self, total: int) -> None:
        """Item uploads begin."""

    def uploaded(self, count: int) -> None:
        """`count` more items are stored."""

    def started(self, batch_id: str, total: int, parallelism: Parallelism) -> None:
        """The batch workflow runs (or, detached, has been started)."""

    def progress(self, progress: BatchProgress) -> None:
        """The batch's counts, polled while it runs, and its final counts."""

    def item_ended(self, name: str, execution: ExecutionStatus) -> None:
        """One item's execution ended (only when wants_items)."""

    def item_output(self, name: str, record: LogRecord) -> None:
        """A chunk of one item's output (only when wants_output)."""

    def item_done(self, name: str) -> None:
        """One item's output is complete (only when wants_output)."""


@dataclass
class BatchOptions:
    """How a batch runs and where its outputs go."""

    parallel: int = 10
    fail_fast: bool = False
    flat: bool = False
    output_dir: Path = Path("outputs")
    remote_only: bool = False
    detach: bool = False
    budget: str | None = None


@dataclass
class BatchResult:
    """What a batch ended as; with detach, only that it exists."""

    batch_id: str
    total: int
    final: BatchProgress | None  # None: detached
    output_dir: Path = Path("outputs")
    written: int = 0
    refused: list[str] = field(default_factory=list)
    failures: list[tuple[BatchItem, ExecutionStatus]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """True when an item failed or fail-fast stopped the batch."""
        return self.final is not None and bool(self.final.failed or self.final.stopped)


async def run_batch(
    session: Session,
    request: submit.RunRequest,
    patterns: list[str],
    cwd: Path,
    options: BatchOptions,
    events: BatchEvents,
) -> BatchResult:
    """Submit a batch and, unless detached, follow it to its end."""
    runs = len(batch.expand_patterns(patterns, cwd))
    if options.parallel < 1:
        raise UserInputError(f"--parallel {options.parallel} is not allowed", "use 1 or more")
    # What the nodes allow is what the batch asks for, so its counts and bar are true.
    parallelism = effective_parallel(session.settings, options.parallel)
    parallel = parallelism.effective
    await before_run(session, request, options.budget, events.warning, runs, parallel)
    events.uploading(runs)
    prepared = await batch.prepare(
        session,
        request,
        patterns,
        parallel,
        options.fail_fast,
        cwd,
        on_upload=events.uploaded,
    )
    handle = await batch.start_riding_out(session, prepared.batch_id, prepared.spec)
    events.started(handle.id, prepared.spec.total, parallelism)
    if options.detach:
        return BatchResult(handle.id, prepared.spec.total, None, options.output_dir)
    return await follow_batch(session, handle.id, prepared.items, options, events)


async def follow_batch(
    session: Session,
    batch_id: str,
    items: list[BatchItem],
    options: BatchOptions,
    events: BatchEvents,
) -> BatchResult:
    """Follow a batch to its end, download per-item outputs, collect its failures."""
    final = await _follow(session, batch_id, items, events)
    result = BatchResult(batch_id, final.total, final, options.output_dir)
    if not options.remote_only:
        result.written, result.refused = await batch.download(
            session, batch_id, items, options.output_dir, options.flat
        )
    result.failures = await _failures(session, batch_id, items)
    return result


async def _follow(
    session: Session, batch_id: str, items: list[BatchItem], events: BatchEvents
) -> BatchProgress:
    if not (events.wants_items or events.wants_output):

        async def show(progress: BatchProgress) -> None:
            events.progress(progress)

        return await batch.follow(session, batch_id, show)
    names = {item.index: item.input.name for item in items}
    ledger = await session.ledger()
    # Items that ended before now (a retried batch's earlier tries) are not news.
    reported = {e.execution_id for e in await ledger.of_batch(batch_id) if e.phase.terminal}
    seen: dict[str, set[str]] = {}  # execution id -> log chunks shown

    ended_before = -1

    async def news(progress: BatchProgress) -> list[ExecutionStatus]:
        """The executions to look at: with output, all (running ones stream theirs); else
        those that ended since, read only when the batch's count of ended items moved (it
        counts an item after its row is final, and the last call comes with `done`)."""
        nonlocal ended_before
        if events.wants_output:
            return await ledger.of_batch(batch_id)
        ended = progress.succeeded + progress.failed + progress.cached
        if ended == ended_before and not progress.done:
            return []
        ended_before = ended
        return await ledger.ended_of_batch(batch_id, reported)

    async def report(progress: BatchProgress) -> None:
        events.progress(progress)
        for execution in await news(progress):
            if execution.execution_id in reported or execution.batch_item is None:
                continue
            name = names.get(execution.batch_item, "?")
            if events.wants_output:
                chunks = seen.setdefault(execution.execution_id, set())
                for record in await read_new_records(
                    session.storage, execution.execution_id, chunks
                ):
                    events.item_output(name, record)
            if execution.phase.terminal:
                reported.add(execution.execution_id)
                if events.wants_output:
                    events.item_done(name)
                if events.wants_items:
                    events.item_ended(name, execution)

    return await batch.follow(session, batch_id, report)


async def _failures(
    session: Session, batch_id: str, items: list[BatchItem]
) -> list[tuple[BatchItem, ExecutionStatus]]:
    latest = batch.latest_per_item(await (await session.ledger()).of_batch(batch_id))
    by_index = {item.index: item for item in items}
    return [
        (by_index[index], execution)
        for index, execution in sorted(latest.items())
        if execution.phase is not Phase.SUCCEEDED and index in by_index
    ]
