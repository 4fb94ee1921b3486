"""`rgrid logs`: an execution's output, from storage."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from rgrid.cli.common import with_session
from rgrid.cli.output import err, write_record
from rgrid.client.session import Session
from rgrid.client.watch import follow_logs
from rgrid.errors import UserInputError
from rgrid.infra.logstore import LogRecord


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

    shown_attempt = 0
    many_attempts = False

    def sink(record: LogRecord) -> None:
        nonlocal shown_attempt
        if (stdout_only and record.stream != "out") or (stderr_only and record.stream != "err"):
            return
        if record.attempt != shown_attempt and (many_attempts or record.attempt > 1):
            sys.stdout.flush()
            err.print(f"[dim]── attempt {record.attempt} ──[/dim]")
        shown_attempt = record.attempt
        write_record(record)

    async def body(session: Session) -> None:
        nonlocal many_attempts
        found = await (await session.ledger()).get(execution_id)  # unknown ids fail clearly
        many_attempts = found.attempts > 1
        source = execution_id
        if found.cached_from:
            source = found.cached_from
            err.print(f"[dim]cached: this run ran nothing; the output of {source}:[/dim]")
        await follow_logs(session, source, sink, follow and not found.cached)

    with_session(body)
