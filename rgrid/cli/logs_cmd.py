"""`rgrid logs`: an execution's output, from storage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from rgrid.cli.common import with_session
from rgrid.cli.output import (
    write_record,
)
from rgrid.client.session import Session
from rgrid.client.watch import follow_logs
from rgrid.errors import UserInputError
from rgrid.infra.logstore import LogRecord

if TYPE_CHECKING:
    pass


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
