"""`rgrid schema`: the wire contract for services that start runs without rgrid's code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rgrid.cli.output import err, print_json
from rgrid.client.contract import SCHEMAS, contract, schema
from rgrid.errors import UserInputError


def schema_command(
    name: Annotated[
        str | None,
        typer.Argument(help=f"One schema: {', '.join(SCHEMAS)}; default: the whole contract."),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Write <name>.schema.json files here.")
    ] = None,
) -> None:
    """Print the JSON schemas of workflow inputs and results (see docs/api.md)."""
    if name is not None and name not in SCHEMAS:
        raise UserInputError(f"no schema named {name!r}", f"use one of {', '.join(SCHEMAS)}")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for each in [name] if name else list(SCHEMAS):
            path = out_dir / f"{each}.schema.json"
            path.write_text(json.dumps(schema(each), indent=2) + "\n")
            err.print(f"wrote {path}")
        return
    print_json(schema(name) if name else contract())
