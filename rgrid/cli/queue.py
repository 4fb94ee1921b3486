"""`rgrid queue`: the backlog per node class, priority and project; `rgrid queue weights`:
each project's fair share, changed live."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from rgrid.cli.common import with_session
from rgrid.cli.output import JsonOption, err, out, print_json
from rgrid.client import queue
from rgrid.client.parse import parse_pairs
from rgrid.client.session import Session
from rgrid.errors import UserInputError

app = typer.Typer(help="The queue of runs waiting for a node, and the projects' shares.")


@app.callback(invoke_without_command=True)
def show(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Waiting runs per node class, priority and project, with the nodes polling."""
    if ctx.invoked_subcommand is not None:
        return

    async def body(session: Session) -> None:
        report = await queue.queue_report(session)
        if json_output:
            print_json(report.model_dump(mode="json"))
            return
        for node_class, pollers in report.pollers.items():
            rate = report.dispatch_per_s.get(node_class, 0.0)
            out.print(
                f"[bold]{node_class}[/bold]: {pollers} node(s) polling for claims, "
                f"{rate:.2f} claims/s lately"
            )
        if not report.groups:
            err.print("nothing waits for a node")
            return
        table = Table("class", "priority", "project", "waiting", "weight")
        for group in report.groups:
            table.add_row(
                group.node_class,
                str(group.priority),
                group.project,
                str(group.waiting),
                f"{group.weight:g}",
            )
        out.print(table)

    with_session(body)


@app.command()
def weights(
    pairs: Annotated[
        list[str] | None, typer.Argument(help="PROJECT=WEIGHT pairs to set, e.g. geo=2 ml=1.")
    ] = None,
    unset: Annotated[
        list[str] | None, typer.Option("--unset", help="A project back to weight 1.")
    ] = None,
    from_settings: Annotated[
        bool, typer.Option("--from-settings", help="Apply RGRID_PROJECT_WEIGHTS.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Show or change the projects' fairness weights; waiting runs follow them at once."""

    async def body(session: Session) -> None:
        chosen: dict[str, float] = dict(session.settings.project_weights) if from_settings else {}
        for project, text in parse_pairs(pairs or [], "weights").items():
            try:
                chosen[project] = float(text)
            except ValueError:
                raise UserInputError(
                    f"weight {text!r} for {project!r} is not a number", "write PROJECT=2"
                ) from None
        if chosen or unset:
            now = await queue.set_weights(session, chosen, unset or [])
        else:
            now = await queue.weights_of(session, session.settings.node_class)
        if json_output:
            print_json(now)
            return
        if not now:
            out.print("every project has weight 1")
        for project, weight in sorted(now.items()):
            out.print(f"{project}={weight:g}")

    with_session(body)
