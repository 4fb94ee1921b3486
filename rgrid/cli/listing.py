"""`rgrid list`: recent executions or batches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from rgrid.cli.common import with_session
from rgrid.cli.output import (
    JsonOption,
    cost,
    err,
    out,
    phase_text,
    print_json,
    when,
)
from rgrid.client.parse import parse_pairs
from rgrid.client.session import Session
from rgrid.models.execution import Phase

if TYPE_CHECKING:
    pass


def list_executions(
    status_filter: Annotated[
        Phase | None, typer.Option("--status", "-s", help="Only executions in this phase.")
    ] = None,
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", "-m", help="Only with this KEY=VALUE tag.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many.")] = 20,
    batches: Annotated[bool, typer.Option("--batches", help="List batches instead.")] = False,
    json_output: JsonOption = False,
) -> None:
    """List recent executions (or batches), newest first."""
    tags = parse_pairs(metadata or [], "--metadata")

    async def body(session: Session) -> None:
        if batches:
            await _list_batches(session, limit, json_output)
            return
        rows = await (await session.ledger()).recent(limit=limit, phase=status_filter, tags=tags)
        if json_output:
            print_json([row.model_dump(mode="json") for row in rows])
            return
        if not rows:
            err.print("no executions yet: try `rgrid run examples/hello.py`")
            return
        table = Table("phase", "script", "created", "exit", "cost", "tags")
        table.add_column("id", no_wrap=True)  # ids are copied from here: never cut them
        for row in rows:
            table.add_row(
                phase_text(row.phase),
                row.script,
                when(row.created_at),
                "-" if row.exit_code is None else str(row.exit_code),
                cost(row),
                ", ".join(f"{k}={v}" for k, v in row.tags.items()),
                row.execution_id,
            )
        out.print(table)

    with_session(body)


async def _list_batches(session: Session, limit: int, json_output: bool) -> None:
    client = await session.temporal()
    found = [
        execution
        async for execution in client.list_workflows("WorkflowType = 'BatchWorkflow'", limit=limit)
    ]
    if json_output:
        print_json(
            [
                {
                    "id": execution.id,
                    "status": execution.status.name.lower() if execution.status else None,
                    "started": execution.start_time,
                    "closed": execution.close_time,
                }
                for execution in found
            ]
        )
        return
    if not found:
        err.print("no batches yet: try `rgrid run SCRIPT --batch 'data/*.csv'`")
        return
    table = Table("status", "started", "closed")
    table.add_column("id", no_wrap=True)
    for execution in found:
        status = execution.status.name.lower() if execution.status else "-"
        table.add_row(status, when(execution.start_time), when(execution.close_time), execution.id)
    out.print(table)
