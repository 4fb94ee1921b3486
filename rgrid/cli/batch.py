"""The batch side of the CLI: `rgrid run --batch`, batch status, and the live display."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from pathlib import Path

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from rgrid.cli.common import with_session
from rgrid.cli.output import detached_hint, err, format_cost, out, phase_text, print_json, when
from rgrid.client import batch_run, submit
from rgrid.client.batch_run import BatchOptions, BatchResult
from rgrid.client.capacity import Parallelism
from rgrid.client.session import Session
from rgrid.models.batch import BatchItem, BatchProgress
from rgrid.models.execution import ExecutionStatus


def counts(progress: BatchProgress) -> str:
    """One line of counts for humans."""
    parts = [
        f"[green]{progress.succeeded} ok[/green]",
        f"[red]{progress.failed} failed[/red]" if progress.failed else "0 failed",
        f"{progress.running + progress.collecting} running",
        f"{progress.queued} queued",
    ]
    if progress.cached:
        parts.append(f"{progress.cached} cached")
    if progress.paused:
        parts.append("[yellow]paused[/yellow]")
    parts.append(f"cost {format_cost(progress.cost_microns)}")
    return " · ".join(parts)


def run_batch_command(
    request: submit.RunRequest,
    patterns: list[str],
    options: BatchOptions,
    watch: bool | None,
    json_output: bool,
) -> int:
    """`rgrid run --batch`: one client call, shown as it goes, then rendered; the exit code."""
    view = BatchView(live_display(watch, json_output), quiet=json_output)

    async def body(session: Session) -> int:
        call = batch_run.run_batch(session, request, patterns, Path.cwd(), options, view)
        with view:
            result = await view.watched(call)
        return render_batch_result(result, json_output)

    return with_session(body)


def live_display(watch: bool | None, json_output: bool) -> bool:
    """A live bar when asked, else when stderr is a terminal and JSON is not asked for."""
    return watch if watch is not None else (sys.stderr.isatty() and not json_output)


class BatchView:
    """The human view of a batch while it goes: an upload bar, then a live bar (on a
    terminal) or one line per item as it ends."""

    def __init__(self, live: bool, quiet: bool) -> None:
        self.live = live
        self.quiet = quiet
        self.wants_items = not live
        self.batch_id: str | None = None
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> BatchView:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close_bar()

    async def watched(self, call: Awaitable[BatchResult]) -> BatchResult:
        """Await the batch; on Ctrl-C say that it goes on without us."""
        try:
            return await call
        except asyncio.CancelledError:  # Ctrl-C: the batch is durable and goes on
            self._close_bar()
            if self.batch_id is not None:
                err.print(detached_hint(self.batch_id))
            raise

    def warning(self, line: str) -> None:
        err.print(f"[yellow]{line}[/yellow]")

    def uploading(self, total: int) -> None:
        if self.live:
            self._open_bar(
                Progress(
                    TextColumn("uploading"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    console=err,
                    transient=True,
                ),
                total,
            )

    def uploaded(self, count: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, count)

    def started(self, batch_id: str, total: int, parallelism: Parallelism) -> None:
        self._close_bar()
        self.batch_id = batch_id
        if not self.quiet:
            err.print(f"[bold]{batch_id}[/bold]: {total} items, parallel {parallelism.effective}")
            if parallelism.reason:
                err.print(f"[yellow]{parallelism.reason}[/yellow]")

    def progress(self, progress: BatchProgress) -> None:
        if not self.live:
            return
        if self._bar is None:
            self._open_bar(
                Progress(
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.description}"),
                    TimeElapsedColumn(),
                    TextColumn("eta"),
                    TimeRemainingColumn(),
                    console=err,
                    transient=False,
                ),
                None,
            )
        assert self._bar is not None and self._task is not None
        self._bar.update(
            self._task,
            total=progress.total,
            completed=progress.succeeded + progress.cached + progress.failed,
            description=counts(progress),
        )

    def item_ended(self, name: str, execution: ExecutionStatus) -> None:
        if not self.quiet:
            err.print(f"{phase_text(execution.phase)} {name} {execution.execution_id}")

    def _open_bar(self, bar: Progress, total: int | None) -> None:
        self._close_bar()
        self._bar = bar
        bar.start()
        self._task = bar.add_task("", total=total)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        self._bar, self._task = None, None


def follow_batch_command(
    session: Session,
    batch_id: str,
    items: list[BatchItem],
    options: BatchOptions,
    json_output: bool,
) -> Awaitable[int]:
    """Follow a started batch (e.g. after a retry) as `rgrid run --batch` does."""
    view = BatchView(live_display(None, json_output), quiet=json_output)
    view.batch_id = batch_id

    async def body() -> int:
        call = batch_run.follow_batch(session, batch_id, items, options, view)
        with view:
            result = await view.watched(call)
        return render_batch_result(result, json_output)

    return body()


def render_batch_result(result: BatchResult, json_output: bool) -> int:
    """Print a batch's result for humans or as JSON; the process exit code."""
    final = result.final
    if final is None:  # detached
        if json_output:
            print_json({"id": result.batch_id, "total": result.total})
        else:
            out.print(result.batch_id)
        return 0
    if json_output:
        print_json(
            {
                **final.model_dump(mode="json", exclude={"state"}),
                "outputs_dir": str(result.output_dir),
                "outputs_written": result.written,
                "failures": [
                    {
                        "input": item.input.name,
                        "id": ex.execution_id,
                        "exit_code": ex.exit_code,
                        "phase": ex.phase.value,
                        "error": ex.error,
                        "last_stderr": _last(ex),
                    }
                    for item, ex in result.failures
                ],
            }
        )
    else:
        for name in result.refused:
            err.print(
                f"[yellow]refused output {name!r}: it would leave {result.output_dir}[/yellow]"
            )
        err.print(f"{result.batch_id}: {counts(final)}")
        if result.written:
            err.print(f"{result.written} output file(s) in {result.output_dir}/")
        if result.failures:
            err.print(_failure_table(result.failures))
    return 1 if result.failed else 0


def _last(execution: ExecutionStatus) -> str:
    lines = execution.stderr_tail.strip().splitlines()
    return lines[-1] if lines else (execution.error or "")


def _failure_table(failures: list[tuple[BatchItem, ExecutionStatus]]) -> Table:
    table = Table("input", "exit", "last stderr line", title=f"{len(failures)} failed")
    table.add_column("id", no_wrap=True)
    for item, execution in failures[:50]:
        exit_code = "-" if execution.exit_code is None else str(execution.exit_code)
        table.add_row(item.input.name, exit_code, _last(execution), execution.execution_id)
    if len(failures) > 50:
        table.caption = f"… and {len(failures) - 50} more: `rgrid list -s failed`"
    return table


def render_status(progress: BatchProgress) -> None:
    """`rgrid status batch-…` for humans."""
    table = Table(show_header=False, box=None)
    rows = [
        ("id", progress.batch_id),
        ("state", "done" if progress.done else ("paused" if progress.paused else "running")),
        ("items", str(progress.total)),
        ("counts", counts(progress)),
        ("parallel", str(progress.parallel)),
        ("started", when(progress.started_at)),
    ]
    for key, value in rows:
        table.add_row(f"[bold]{key}[/bold]", value)
    out.print(table)
