"""`rgrid admin`: operate a team deployment's shared services."""

from __future__ import annotations

import asyncio

import typer

from rgrid.cli.common import settings
from rgrid.cli.output import JsonOption, out, print_json

app = typer.Typer(help="Operate the shared services of a team deployment.", no_args_is_help=True)


@app.command()
def setup(json_output: JsonOption = False) -> None:
    """Migrate the ledger, create the bucket and its lifecycle rules, register search
    attributes. Safe to run again."""
    from rgrid.client.setup import setup as run_setup  # SQLAlchemy: only for this command

    steps = asyncio.run(run_setup(settings()))
    if json_output:
        print_json([step.model_dump() for step in steps])
        return
    for step in steps:
        mark = "[green]changed[/green]" if step.changed else "[dim]ok[/dim]     "
        out.print(f"{mark}  {step.part}: {step.detail}", markup=True)
