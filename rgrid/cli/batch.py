"""The batch side of the CLI: `rgrid run --batch`, batch status, and the live display."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from rgrid.cli.output import (
    EXIT_CANCELLED,
    detached_hint,
    err,
    format_cost,
    out,
    phase_text,
    print_json,
    when,
)
from rgrid.client import batch, submit
from rgrid.client.session import Session
from rgrid.models.batch import BatchItem, BatchProgress
from rgrid.models.execution import ExecutionStatus, Phase


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


async def run_batch(
    session: Session,
    request: submit.RunRequest,
    patterns: list[str],
    parallel: int,
    fail_fast: bool,
    flat: bool,
    watch: bool | None,
    output_dir: Path,
    remote_only: bool,
    detach: bool,
    json_output: bool,
) -> int:
    """Submit a batch, follow it, download per-item outputs; the process exit code."""
    live = watch if watch is not None else (sys.stderr.isatty() and not json_output)
    paths = batch.expand_patterns(patterns, Path.cwd())
    with Progress(
        TextColumn("uploading"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        disable=not live,
        transient=True,
    ) as bar:
        task = bar.add_task("upload", total=len(paths))
        prepared = await batch.prepare(
            session,
            request,
            patterns,
            parallel,
            fail_fast,
            Path.cwd(),
            on_upload=lambda n: bar.advance(task, n),
        )
    handle = await batch.start_riding_out(session, prepared.batch_id, prepared.spec)
    if detach:
        if json_output:
            print_json({"id": handle.id, "total": prepared.spec.total})
        else:
            out.print(handle.id)
        return 0
    if not json_output:
        err.print(f"[bold]{handle.id}[/bold]: {prepared.spec.total} items, parallel {parallel}")
    return await follow_batch(
        session, handle.id, prepared.items, live, output_dir, flat, remote_only, json_output
    )


async def follow_batch(
    session: Session,
    batch_id: str,
    items: list[BatchItem],
    live: bool,
    output_dir: Path,
    flat: bool,
    remote_only: bool,
    json_output: bool,
) -> int:
    """Follow a batch to its end, download per-item outputs, summarise; the exit code."""
    try:
        if live:
            final = await _follow_live(session, batch_id)
        else:
            final = await _follow_lines(session, batch_id, items, quiet=json_output)
    except asyncio.CancelledError:  # Ctrl-C: the batch is durable and goes on
        err.print(detached_hint(batch_id))
        raise
    if final.cancelled:
        if json_output:
            print_json(final.model_dump(mode="json", exclude={"state"}))
        else:
            err.print(f"{batch_id}: cancelled ({counts(final)})")
        return EXIT_CANCELLED
    written, refused = 0, list[str]()
    if not remote_only:
        written, refused = await batch.download(session, batch_id, items, output_dir, flat)
    failures = await _failures(session, batch_id, items)
    if json_output:
        print_json(
            {
                **final.model_dump(mode="json", exclude={"state"}),
                "outputs_dir": str(output_dir),
                "outputs_written": written,
                "failures": [
                    {
                        "input": item.input.name,
                        "id": ex.execution_id,
                        "exit_code": ex.exit_code,
                        "phase": ex.phase.value,
                        "error": ex.error,
                        "last_stderr": _last(ex),
                    }
                    for item, ex in failures
                ],
            }
        )
    else:
        for name in refused:
            err.print(f"[yellow]refused output {name!r}: it would leave {output_dir}[/yellow]")
        err.print(f"{batch_id}: {counts(final)}")
        if written:
            err.print(f"{written} output file(s) in {output_dir}/")
        if failures:
            err.print(_failure_table(failures))
    return 1 if final.failed or final.stopped else 0


async def _follow_live(session: Session, batch_id: str) -> BatchProgress:
    with Progress(
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    ) as bar:
        task = bar.add_task("", total=None)

        async def show(progress: BatchProgress) -> None:
            bar.update(
                task,
                total=progress.total,
                completed=progress.succeeded + progress.cached + progress.failed,
                description=counts(progress),
            )

        return await batch.follow(session, batch_id, show)


async def _follow_lines(
    session: Session, batch_id: str, items: list[BatchItem], quiet: bool
) -> BatchProgress:
    """Without a terminal: one line per finished item, as it finishes."""
    names = {item.index: item.input.name for item in items}
    ledger = await session.ledger()
    # Items that ended before now (a retried batch's earlier tries) are not news.
    reported = {e.execution_id for e in await ledger.of_batch(batch_id) if e.phase.terminal}

    async def report(_: BatchProgress) -> None:
        for execution in await ledger.of_batch(batch_id):
            if execution.phase.terminal and execution.execution_id not in reported:
                reported.add(execution.execution_id)
                if not quiet and execution.batch_item is not None:
                    name = names.get(execution.batch_item, "?")
                    err.print(f"{phase_text(execution.phase)} {name} {execution.execution_id}")

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


def _state(progress: BatchProgress) -> str:
    if progress.cancelled:
        return "cancelled"
    return "done" if progress.done else ("paused" if progress.paused else "running")


def render_status(progress: BatchProgress) -> None:
    """`rgrid status batch-…` for humans."""
    table = Table(show_header=False, box=None)
    rows = [
        ("id", progress.batch_id),
        ("state", _state(progress)),
        ("items", str(progress.total)),
        ("counts", counts(progress)),
        ("parallel", str(progress.parallel)),
        ("started", when(progress.started_at)),
    ]
    for key, value in rows:
        table.add_row(f"[bold]{key}[/bold]", value)
    out.print(table)
