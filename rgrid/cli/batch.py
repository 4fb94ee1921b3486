"""The batch side of the CLI: `rgrid run --batch`, batch status, and the live display."""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path

from rich.table import Table

from rgrid.cli.batch_view import BatchView, counts, live_display
from rgrid.cli.common import with_session
from rgrid.cli.output import EXIT_CANCELLED, err, out, print_json, when
from rgrid.cli.tables import Column, fitted_table
from rgrid.client import batch_run, submit
from rgrid.client.batch_run import BatchOptions, BatchResult
from rgrid.client.session import Session
from rgrid.models.batch import BatchItem, BatchProgress
from rgrid.models.execution import ExecutionStatus


def run_batch_command(
    request: submit.RunRequest,
    patterns: list[str],
    options: BatchOptions,
    watch: bool | None,
    json_output: bool,
    show_output: bool = False,
) -> int:
    """`rgrid run --batch`: one client call, shown as it goes, then rendered; the exit code."""
    view = BatchView(live_display(watch, json_output), json_output, show_output)

    async def body(session: Session) -> int:
        call = batch_run.run_batch(session, request, patterns, Path.cwd(), options, view)
        with view:
            result = await view.watched(call)
        return render_batch_result(result, json_output)

    return with_session(body)


def follow_batch_command(
    session: Session,
    batch_id: str,
    items: list[BatchItem],
    options: BatchOptions,
    json_output: bool,
) -> Awaitable[int]:
    """Follow a started batch (e.g. after a retry) as `rgrid run --batch` does."""
    view = BatchView(live_display(None, json_output), json_output)
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
        state = "cancelled: " if final.cancelled else ""
        err.print(f"{result.batch_id}: {state}{counts(final)}", soft_wrap=False)
        if result.written:
            err.print(f"{result.written} output file(s) in {result.output_dir}/")
        if result.failures:
            err.print(_failure_table(result.failures))
    if final.cancelled:
        return EXIT_CANCELLED
    return 1 if result.failed else 0


def _last(execution: ExecutionStatus) -> str:
    lines = execution.stderr_tail.strip().splitlines()
    return lines[-1] if lines else (execution.error or "")


FAILURE_COLUMNS = [
    Column("input", priority=4),
    # The exit code is narrow and says most: it stays; the stderr line wraps.
    Column("exit", priority=5, justify="right"),
    Column("last stderr line", priority=3),
    Column("id", whole=True),
]


def _failure_table(failures: list[tuple[BatchItem, ExecutionStatus]]) -> Table:
    rows = [
        [
            item.input.name,
            "-" if execution.exit_code is None else str(execution.exit_code),
            _last(execution),
            execution.execution_id,
        ]
        for item, execution in failures[:50]
    ]
    table = fitted_table(err, FAILURE_COLUMNS, rows, title=f"{len(failures)} failed")
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
