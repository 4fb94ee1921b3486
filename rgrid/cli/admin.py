"""`rgrid admin`: operate a team deployment's shared services."""

from __future__ import annotations

import asyncio

import typer

from rgrid.cli.common import settings
from rgrid.cli.output import JsonOption, out, print_json
from rgrid.client.setup import setup as run_setup
from rgrid.errors import ConfigError
from rgrid.infra.codec import add_key, key_file

app = typer.Typer(help="Operate the shared services of a team deployment.", no_args_is_help=True)


@app.command()
def setup(json_output: JsonOption = False) -> None:
    """Migrate the ledger, create the bucket and its lifecycle rules, register search
    attributes. Safe to run again."""

    steps = asyncio.run(run_setup(settings()))
    if json_output:
        print_json([step.model_dump() for step in steps])
        return
    for step in steps:
        mark = "[green]changed[/green]" if step.changed else "[dim]ok[/dim]     "
        out.print(f"{mark}  {step.part}: {step.detail}", markup=True)


@app.command("rotate-key")
def rotate_key() -> None:
    """Add a new payload codec key: it encrypts from now on, the old ones still decrypt.
    Restart workers and nodes to pick it up."""
    current = settings()
    if current.codec_key:
        raise ConfigError(
            "the codec keys come from RGRID_CODEC_KEY",
            "append a new ID:BASE64 key there (newest last) in your secret store",
        )
    key = add_key(current.home)
    out.print(f"new codec key {key.key_id} in {key_file(current.home)}")
