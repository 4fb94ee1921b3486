"""`rgrid download` and `rgrid outputs`: an execution's outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rgrid.cli.common import with_session
from rgrid.cli.output import (
    JsonOption,
    OutputDirOption,
    err,
    out,
    print_json,
)
from rgrid.client import batch
from rgrid.client.outputs import download_outputs
from rgrid.client.session import Session
from rgrid.errors import UserInputError


def download(
    execution_id: Annotated[
        str, typer.Argument(help="An execution id (exec-…), or a batch id (batch-…).")
    ],
    output_dir: OutputDirOption = Path("outputs"),
    list_only: Annotated[
        bool, typer.Option("--list", help="List outputs; download nothing.")
    ] = False,
    file: Annotated[str | None, typer.Option(help="Only this output (its relative path).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Download an execution's outputs (after `rgrid run --remote-only`, or again); a
    batch's into OUTPUT_DIR/<input name>/, as the batch run does."""

    async def body(session: Session) -> None:
        if execution_id.startswith("batch-"):
            items = await batch.load_items(session, execution_id)
            count, bad = await batch.download(session, execution_id, items, output_dir, False)
            for name in bad:
                err.print(f"[yellow]refused output {name!r}: it would leave {output_dir}[/yellow]")
            if json_output:
                print_json({"outputs_written": count, "refused": bad})
            else:
                err.print(f"{count} file(s) in {output_dir}/")
            return
        found = await (await session.ledger()).get(execution_id)
        outputs = [o for o in found.outputs if file is None or o.path == file]
        if file is not None and not outputs:
            raise UserInputError(f"{execution_id} has no output {file!r}", "see --list")
        if list_only and json_output:
            print_json([o.model_dump(mode="json") for o in outputs])
            return
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
        if json_output:
            print_json({"outputs": [str(p) for p in written], "refused": refused})
            return
        err.print(f"{len(written)} file(s) in {output_dir}/")

    with_session(body)


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
