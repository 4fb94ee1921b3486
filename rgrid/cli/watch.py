"""`rgrid watch ID`: reattach to an execution or batch and finish as `rgrid run` would."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rgrid.cli.batch import follow_batch_command
from rgrid.cli.common import with_session
from rgrid.cli.output import JsonOption, OutputDirOption
from rgrid.cli.run import RunView, render_result, watched
from rgrid.client import batch
from rgrid.client import run as client_run
from rgrid.client.batch_run import BatchOptions
from rgrid.client.run import QuietEvents, RunOptions
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
    json_output: JsonOption = False,
) -> None:
    """Follow a running (or ended) execution or batch to its end: its output, its outputs
    downloaded into the same layout, and the exit code `rgrid run` would have given."""

    async def body(session: Session) -> int:
        if target.startswith("batch-"):
            items = await session.blips.call(lambda: batch.load_items(session, target))
            batch_options = BatchOptions(flat=flat, output_dir=output_dir, remote_only=remote_only)
            return await follow_batch_command(session, target, items, batch_options, json_output)
        view = RunView() if not json_output else None
        if view is not None:
            view.execution_id = target
        options = RunOptions(output_dir=output_dir, remote_only=remote_only)
        call = client_run.follow(session, target, options, view or QuietEvents())
        return render_result(await watched(view, call), options, json_output)

    raise typer.Exit(with_session(body))
