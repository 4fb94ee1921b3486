"""`rgrid watch ID`: reattach to an execution or batch and finish as `rgrid run` would."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from rgrid.cli.batch import follow_batch
from rgrid.cli.common import with_session
from rgrid.cli.output import OutputDirOption
from rgrid.cli.run import follow_execution
from rgrid.client import batch, submit
from rgrid.client.session import Session


def watch(
    target: Annotated[
        str, typer.Argument(help="An execution id (exec-…) or a batch id (batch-…).")
    ],
    output_dir: OutputDirOption = Path("outputs"),
    remote_only: Annotated[
        bool, typer.Option("--remote-only", help="Leave outputs in storage; do not download.")
    ] = False,
    flat: Annotated[
        bool, typer.Option("--flat", help="A batch: one output dir, names prefixed by input stem.")
    ] = False,
    live: Annotated[
        bool | None,
        typer.Option("--live/--no-live", help="A batch: live progress (default on a terminal)."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of streaming.")
    ] = False,
) -> None:
    """Follow a running (or ended) execution or batch to its end: its output, its outputs
    downloaded into the same layout, and the exit code `rgrid run` would have given."""

    async def body(session: Session) -> int:
        if target.startswith("batch-"):
            items = await session.blips.call(lambda: batch.load_items(session, target))
            shown = live if live is not None else (sys.stderr.isatty() and not json_output)
            return await follow_batch(
                session, target, items, shown, output_dir, flat, remote_only, json_output
            )
        return await follow_execution(
            session, target, output_dir, remote_only, json_output, submit.UploadReport()
        )

    raise typer.Exit(with_session(body))
