"""Commands about executions that exist: status, logs, list, cancel, download."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from rgrid.cli.batch import follow_batch, render_status
from rgrid.cli.common import with_session
from rgrid.cli.output import (
    EXIT_RGRID_ERROR,
    JsonOption,
    OutputDirOption,
    cost,
    duration,
    err,
    format_cost,
    out,
    phase_text,
    print_json,
    when,
    write_record,
)
from rgrid.cli.run import follow_execution
from rgrid.client import batch, submit
from rgrid.client.history import started_input
from rgrid.client.outputs import download_outputs
from rgrid.client.parse import parse_pairs
from rgrid.client.session import Session
from rgrid.client.watch import cancel as cancel_execution
from rgrid.client.watch import current_status, follow_logs
from rgrid.errors import UserInputError
from rgrid.infra.logstore import LogRecord
from rgrid.infra.retention import outputs_expire_at
from rgrid.models.execution import ExecutionSpec, ExecutionStatus, Phase

if TYPE_CHECKING:
    from rgrid.money.report import ExecutionCost


def status(
    execution_id: Annotated[str, typer.Argument(help="An execution id, or a batch id.")],
    json_output: JsonOption = False,
) -> None:
    """Show an execution's phase, node, times, exit code, attempts, cost; or a batch's counts."""

    async def body(session: Session) -> None:
        from rgrid.client import money  # SQLAlchemy: only for the commands that price

        if execution_id.startswith("batch-"):
            progress = await batch.progress(session, execution_id)
            priced = await money.of_batch_or_none(session, execution_id)
            if json_output:
                data = progress.model_dump(mode="json", exclude={"state"})
                if priced is not None:
                    data["cost_microns"] = priced.executions_microns
                    data["idle_caused_microns"] = priced.idle_microns
                    data["cost_provisional"] = priced.provisional
                print_json(data)
            else:
                render_status(progress)
                if priced is not None:
                    out.print(
                        f"[bold]cost[/bold]      {format_cost(priced.executions_microns)} "
                        f"{_final(priced.provisional)}; idle it caused "
                        f"{format_cost(priced.idle_microns)}"
                    )
            return
        found = await current_status(session, execution_id)
        # A cached run returns outputs its source stored when that one finished.
        source = found
        if found.cached_from:
            source = await (await session.ledger()).get(found.cached_from)
        expiry = outputs_expire_at(session.settings, source.finished_at)
        priced_run = await money.of_execution(session, execution_id)
        cost_text = _cost_text(found, priced_run)
        if json_output:
            data = found.model_dump(mode="json")
            if priced_run.node_id:  # the ledger knows its node: the amortized figure
                data["cost_microns"] = priced_run.cost_microns
            data["cost_provisional"] = priced_run.provisional or not (
                priced_run.node_id or found.cached
            )
            data["outputs_expire_at"] = expiry
            print_json(data)
            return
        table = Table(show_header=False, box=None)
        rows = [
            ("id", found.execution_id),
            ("phase", phase_text(found.phase)),
            ("script", " ".join([found.script, *found.args])),
            ("node", found.node_id or "-"),
            ("runtime", found.runtime or "-"),
            ("attempts", str(found.attempts)),
            ("created", when(found.created_at)),
            ("started", when(found.started_at)),
            ("finished", when(found.finished_at)),
            ("duration", duration(found)),
            ("exit code", "-" if found.exit_code is None else str(found.exit_code)),
            ("cost", cost_text),
            ("tags", ", ".join(f"{k}={v}" for k, v in found.tags.items()) or "-"),
            ("outputs", str(len(found.outputs))),
        ]
        if found.outputs:
            rows.append(("expires", when(expiry) if expiry else "never (local storage)"))
        if found.cached:
            rows.append(("cached", f"outputs of {found.cached_from}; ran on no node"))
        if found.error:
            rows.append(("error", found.error))
        for key, value in rows:
            table.add_row(f"[bold]{key}[/bold]", value)
        out.print(table)

    with_session(body)


def _final(provisional: bool) -> str:
    return "(provisional: its billing hour is still open)" if provisional else "(final)"


def _cost_text(found: ExecutionStatus, priced: ExecutionCost) -> str:
    if found.cached:
        return f"{cost(found)} (served from the cache)"
    if priced.node_id:
        return f"{format_cost(priced.cost_microns)} {_final(priced.provisional)}"
    # Its node is not in the ledger: the figure it recorded at its end, which stays open.
    return f"{cost(found)} (provisional: its node has no ledger record)"


def logs(
    execution_id: Annotated[str, typer.Argument(help="An execution id (exec-…).")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the execution ends.")
    ] = False,
    stdout_only: Annotated[bool, typer.Option("--stdout-only", help="Only stdout.")] = False,
    stderr_only: Annotated[bool, typer.Option("--stderr-only", help="Only stderr.")] = False,
) -> None:
    """Print an execution's output, from storage (works after its node is gone)."""
    if stdout_only and stderr_only:
        raise UserInputError("--stdout-only and --stderr-only exclude each other", "pick one")

    def sink(record: LogRecord) -> None:
        if (stdout_only and record.stream != "out") or (stderr_only and record.stream != "err"):
            return
        write_record(record)

    async def body(session: Session) -> None:
        await (await session.ledger()).get(execution_id)  # unknown ids fail clearly
        await follow_logs(session, execution_id, sink, follow)

    with_session(body)


def list_executions(
    status_filter: Annotated[
        Phase | None, typer.Option("--status", "-s", help="Only executions in this phase.")
    ] = None,
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", "-m", help="Only with this KEY=VALUE tag.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many.")] = 20,
    batches: Annotated[bool, typer.Option("--batches", help="List batches instead.")] = False,
    json_output: JsonOption = False,
) -> None:
    """List recent executions (or batches), newest first."""
    tags = parse_pairs(metadata or [], "--metadata")

    async def body(session: Session) -> None:
        if batches:
            await _list_batches(session, limit, json_output)
            return
        rows = await (await session.ledger()).recent(limit=limit, phase=status_filter, tags=tags)
        if json_output:
            print_json([row.model_dump(mode="json") for row in rows])
            return
        if not rows:
            err.print("no executions yet: try `rgrid run examples/hello.py`")
            return
        table = Table("phase", "script", "created", "exit", "cost", "tags")
        table.add_column("id", no_wrap=True)  # ids are copied from here: never cut them
        for row in rows:
            table.add_row(
                phase_text(row.phase),
                row.script,
                when(row.created_at),
                "-" if row.exit_code is None else str(row.exit_code),
                cost(row),
                ", ".join(f"{k}={v}" for k, v in row.tags.items()),
                row.execution_id,
            )
        out.print(table)

    with_session(body)


async def _list_batches(session: Session, limit: int, json_output: bool) -> None:
    client = await session.temporal()
    found = [
        execution
        async for execution in client.list_workflows("WorkflowType = 'BatchWorkflow'", limit=limit)
    ]
    if json_output:
        print_json(
            [
                {
                    "id": execution.id,
                    "status": execution.status.name.lower() if execution.status else None,
                    "started": execution.start_time,
                    "closed": execution.close_time,
                }
                for execution in found
            ]
        )
        return
    if not found:
        err.print("no batches yet: try `rgrid run SCRIPT --batch 'data/*.csv'`")
        return
    table = Table("status", "started", "closed")
    table.add_column("id", no_wrap=True)
    for execution in found:
        status = execution.status.name.lower() if execution.status else "-"
        table.add_row(status, when(execution.start_time), when(execution.close_time), execution.id)
    out.print(table)


def retry(
    target: Annotated[
        str | None, typer.Argument(help="An execution id (exec-…) or a batch id (batch-…).")
    ] = None,
    batch_id: Annotated[
        str | None, typer.Option("--batch", "-b", help="A batch whose failed items to re-run.")
    ] = None,
    failed_only: Annotated[
        bool, typer.Option("--failed-only", help="Re-run only the batch's failed items.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Re-run an execution that succeeded.")
    ] = False,
    output_dir: OutputDirOption = Path("outputs"),
    flat: Annotated[bool, typer.Option("--flat", help="Batch outputs in one dir.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Run a failed execution again, or a batch's failed items inside the same batch."""
    batch_id = batch_id or (target if target and target.startswith("batch-") else None)
    if batch_id is None and target is None:
        raise UserInputError("nothing to retry", "give an execution id or --batch BATCH_ID")

    async def body(session: Session) -> int:
        from rgrid.client import money

        for line in await money.check_limits(session, session.settings.project, "retries"):
            err.print(f"[yellow]{line}[/yellow]")
        if batch_id is not None:
            if not failed_only:
                raise UserInputError(
                    "a batch is retried with --failed-only",
                    "to run every item again, start the batch again with `rgrid run --batch`",
                )
            requeued = await batch.retry_failed(session, batch_id)
            err.print(f"{batch_id}: {requeued} failed item(s) queued again")
            items = await batch.load_items(session, batch_id)
            live = sys.stderr.isatty() and not json_output
            return await follow_batch(
                session, batch_id, items, live, output_dir, flat, False, json_output
            )
        assert target is not None
        previous = await (await session.ledger()).get(target)
        if previous.phase is Phase.SUCCEEDED and not force:
            raise UserInputError(f"{target} succeeded", "use --force to run it again")
        if not previous.phase.terminal:
            raise UserInputError(f"{target} is still {previous.phase.value}", "wait for it")
        spec = await started_input(await session.temporal(), target, ExecutionSpec)
        # --force on a success means "compute it again", not "serve it from the cache".
        handle = await submit.start(session, spec.model_copy(update={"no_cache": force}))
        if not json_output:
            err.print(f"[bold]{handle.id}[/bold] (retry of {target})")
        return await follow_execution(
            session, handle.id, output_dir, False, json_output, submit.UploadReport()
        )

    raise typer.Exit(with_session(body))


def outputs(
    execution_id: Annotated[str, typer.Argument(help="An execution id (exec-…).")],
    json_output: JsonOption = False,
) -> None:
    """List an execution's outputs with their sizes (they stay in storage)."""

    async def body(session: Session) -> None:
        found = await (await session.ledger()).get(execution_id)
        if json_output:
            print_json([o.model_dump(mode="json") for o in found.outputs])
            return
        if not found.outputs:
            err.print(f"{execution_id} has no outputs")
            return
        table = Table("size", "path", box=None)
        for output in found.outputs:
            table.add_row(f"{output.size:,}", output.path)
        out.print(table)
        total = sum(o.size for o in found.outputs)
        err.print(f"{len(found.outputs)} output(s), {total:,} bytes")

    with_session(body)


def cancel(
    execution_id: Annotated[str, typer.Argument(help="An execution or batch id.")],
) -> None:
    """Stop a running execution or batch (scripts are killed within seconds)."""

    async def body(session: Session) -> int:
        with err.status(f"cancelling {execution_id}…"):
            final = await cancel_execution(session, execution_id)
        err.print(f"{execution_id}: {phase_text(final.phase)}")
        return 0 if final.phase.terminal else EXIT_RGRID_ERROR

    raise typer.Exit(with_session(body))


def download(
    execution_id: Annotated[str, typer.Argument(help="An execution id (exec-…).")],
    output_dir: OutputDirOption = Path("outputs"),
    list_only: Annotated[
        bool, typer.Option("--list", help="List outputs; download nothing.")
    ] = False,
    file: Annotated[str | None, typer.Option(help="Only this output (its relative path).")] = None,
) -> None:
    """Download an execution's outputs (after `rgrid run --remote-only`, or again)."""

    async def body(session: Session) -> None:
        found = await (await session.ledger()).get(execution_id)
        outputs = [o for o in found.outputs if file is None or o.path == file]
        if file is not None and not outputs:
            raise UserInputError(f"{execution_id} has no output {file!r}", "see --list")
        if list_only:
            for output in outputs:
                out.print(f"{output.size:>12}  {output.path}")
            return
        chosen = found.model_copy(update={"outputs": outputs})
        written, refused = await download_outputs(
            session.storage, chosen, output_dir, track=session.track
        )
        for name in refused:
            err.print(f"[yellow]refused output {name!r}: it would leave {output_dir}[/yellow]")
        err.print(f"{len(written)} file(s) in {output_dir}/")

    with_session(body)
