"""`rgrid retry`: a failed execution again, or a batch's failed items."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rgrid.cli.batch import follow_batch_command
from rgrid.cli.common import with_session
from rgrid.cli.output import (
    JsonOption,
    OutputDirOption,
    err,
)
from rgrid.cli.run import RunView, render_result, watched
from rgrid.client import batch, submit
from rgrid.client import run as client_run
from rgrid.client.batch_run import BatchOptions
from rgrid.client.history import started_input
from rgrid.client.run import QuietEvents, RunOptions
from rgrid.client.session import Session
from rgrid.errors import UserInputError
from rgrid.models.execution import ExecutionSpec, Phase


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
            items = await batch.load_items(session, batch_id)
            # Only the retried items' outputs and failures are this command's news.
            retried = await batch.failed_items(session, batch_id, items)
            requeued = await batch.retry_failed(session, batch_id)
            err.print(f"{batch_id}: {requeued} failed item(s) queued again")
            items = retried or items
            batch_options = BatchOptions(flat=flat, output_dir=output_dir)
            return await follow_batch_command(session, batch_id, items, batch_options, json_output)
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
        view = RunView() if not json_output else None
        if view is not None:
            view.execution_id = handle.id
        options = RunOptions(output_dir=output_dir)
        call = client_run.follow(session, handle.id, options, view or QuietEvents())
        return render_result(await watched(view, call), options, json_output)

    raise typer.Exit(with_session(body))
