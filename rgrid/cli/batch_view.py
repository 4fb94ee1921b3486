"""What a batch looks like while it runs: an upload bar, then a live bar with its counts
(on a terminal) or one line per item as it ends; with --show-output, each item's output
as it comes, prefixed by its input's name (as `docker compose` prefixes services)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Iterable
from datetime import timedelta

from rich.console import RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from rgrid.cli.output import detached_hint, err, format_cost, out, phase_text
from rgrid.client.batch_run import BatchResult
from rgrid.client.capacity import Parallelism
from rgrid.infra.logstore import LogRecord
from rgrid.models.batch import BatchProgress
from rgrid.models.execution import ExecutionStatus

PREFIX_STYLES = ("cyan", "magenta", "blue", "green", "yellow", "bright_cyan", "bright_magenta")


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
    parts.append(f"parallel {progress.parallel}")
    parts.append(f"cost {format_cost(progress.cost_microns)}")
    return " · ".join(parts)


def live_display(watch: bool | None, json_output: bool) -> bool:
    """A live bar when asked, else when stderr is a terminal and JSON is not asked for."""
    return watch if watch is not None else (sys.stderr.isatty() and not json_output)


class EtaColumn(ProgressColumn):
    """Time left; it stands still while the batch is paused instead of counting down."""

    def render(self, task: Task) -> Text:
        if task.fields.get("paused"):
            return Text("eta paused", style="yellow")
        remaining = task.time_remaining
        if remaining is None:
            return Text("eta -:--:--", style="progress.remaining")
        return Text(f"eta {timedelta(seconds=int(remaining))}", style="progress.remaining")


class BatchBar(Progress):
    """The bar, count of done items, elapsed and ETA on one row (they fit 80 columns);
    the counts on a row of their own below, wrapped rather than cut."""

    counts_line: str = ""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        if self.counts_line:
            yield Text.from_markup(self.counts_line)


class BatchView:
    """The human view of a batch while it goes (BatchEvents for the client)."""

    def __init__(self, live: bool, quiet: bool, show_output: bool = False) -> None:
        self.live = live
        self.quiet = quiet
        self.wants_items = not live
        self.wants_output = show_output and not quiet
        self.batch_id: str | None = None
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._partial: dict[str, bytes] = {}
        self._styles: dict[str, str] = {}

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
            bar = Progress(
                TextColumn("uploading"),
                BarColumn(),
                MofNCompleteColumn(),
                console=err,
                transient=True,
            )
            self._open_bar(bar, total)

    def uploaded(self, count: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, count)

    def started(self, batch_id: str, total: int, parallelism: Parallelism) -> None:
        self._close_bar()
        self.batch_id = batch_id
        if not self.quiet:
            header = f"[bold]{batch_id}[/bold]: {total} items, parallel {parallelism.effective}"
            err.print(header, soft_wrap=False)
            if parallelism.reason:
                err.print(f"[yellow]{parallelism.reason}[/yellow]", soft_wrap=False)

    def progress(self, progress: BatchProgress) -> None:
        if not self.live:
            return
        if self._bar is None:
            bar = BatchBar(
                BarColumn(bar_width=None),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                EtaColumn(),
                console=err,
                transient=False,
                expand=True,
            )
            self._open_bar(bar, None)
        assert isinstance(self._bar, BatchBar) and self._task is not None
        # The header follows the batch: set_parallel and pause show here as they happen.
        self._bar.counts_line = counts(progress)
        self._bar.update(
            self._task,
            total=progress.total,
            completed=progress.succeeded + progress.cached + progress.failed,
            paused=progress.paused,
        )

    def item_ended(self, name: str, execution: ExecutionStatus) -> None:
        self._flush(name)
        if not self.quiet:
            err.print(f"{phase_text(execution.phase)} {name} {execution.execution_id}")

    def item_output(self, name: str, record: LogRecord) -> None:
        """A chunk of an item's output: each whole line shown with the item's name."""
        data = self._partial.pop(name, b"") + record.data
        *lines, rest = data.split(b"\n")
        if rest:
            self._partial[name] = rest
        for line in lines:
            self._line(name, line, record.stream)

    def item_done(self, name: str) -> None:
        """An item's output is complete: show what did not end with a newline."""
        self._flush(name)

    def _flush(self, name: str) -> None:
        rest = self._partial.pop(name, b"")
        if rest:
            self._line(name, rest, "out")

    def _line(self, name: str, line: bytes, stream: str) -> None:
        style = self._styles.setdefault(name, PREFIX_STYLES[len(self._styles) % 7])
        text = Text(f"{name} | ", style=style)
        text.append(line.decode(errors="replace"))
        (out if stream == "out" else err).print(text, soft_wrap=True)

    def _open_bar(self, bar: Progress, total: int | None) -> None:
        self._close_bar()
        self._bar = bar
        bar.start()
        self._task = bar.add_task("", total=total)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        self._bar, self._task = None, None
