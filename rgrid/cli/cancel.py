"""`rgrid cancel`: one execution or batch, or with --all every execution the filters
select, after saying how many."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from rgrid.cli.common import with_session
from rgrid.cli.output import EXIT_RGRID_ERROR, err, phase_text
from rgrid.client import bulk_cancel
from rgrid.client.parse import parse_pairs
from rgrid.client.session import Session
from rgrid.client.watch import cancel as cancel_execution
from rgrid.errors import UserInputError
from rgrid.models.execution import Phase


def cancel(
    execution_id: Annotated[
        str | None, typer.Argument(help="An execution or batch id (or --all).")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every execution that has not ended, filtered below.")
    ] = False,
    phases: Annotated[
        list[Phase] | None, typer.Option("--status", "-s", help="With --all: only this phase.")
    ] = None,
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", "-m", help="With --all: this KEY=VALUE tag.")
    ] = None,
    project: Annotated[str | None, typer.Option(help="With --all: only this project.")] = None,
    batch_id: Annotated[
        str | None, typer.Option("--batch", help="With --all: only this batch's items.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first.")] = False,
) -> None:
    """Stop a running execution or batch (scripts are killed within seconds), or with
    --all every execution the filters select, after saying how many."""
    if every:
        selection = bulk_cancel.Selection(
            phases=phases or [],
            tags=parse_pairs(metadata or [], "--metadata"),
            project=project,
            batch_id=batch_id,
        )
        raise typer.Exit(with_session(lambda session: _cancel_all(session, selection, yes)))
    if execution_id is None:
        raise UserInputError("nothing to cancel", "give an id, or --all with filters")

    async def body(session: Session) -> int:
        with err.status(f"cancelling {execution_id}…"):
            final = await cancel_execution(session, execution_id)
        err.print(f"{execution_id}: {phase_text(final.phase)}")
        return 0 if final.phase.terminal else EXIT_RGRID_ERROR

    raise typer.Exit(with_session(body))


async def _cancel_all(session: Session, selection: bulk_cancel.Selection, yes: bool) -> int:
    chosen = await bulk_cancel.select(session, selection)
    if not chosen:
        err.print("no execution matches: nothing cancelled")
        return 0
    if not yes:
        if not sys.stdin.isatty():
            raise UserInputError(
                f"this would cancel {len(chosen)} execution(s)", "add --yes to confirm"
            )
        if not typer.confirm(f"cancel {len(chosen)} execution(s)?"):
            err.print("nothing cancelled")
            return 1
    with err.status(f"cancelling {len(chosen)} execution(s)…"):
        ended = await bulk_cancel.cancel_all(session, chosen)
    cancelled = sum(1 for run in ended if run.phase is Phase.CANCELLED)
    other = [run for run in ended if run.phase is not Phase.CANCELLED]
    err.print(f"{cancelled} of {len(chosen)} execution(s) cancelled")
    for run in other:
        err.print(f"{run.execution_id}: {phase_text(run.phase)}")
    return 0 if not other else EXIT_RGRID_ERROR
