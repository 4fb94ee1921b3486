"""`rgrid list`: recent executions or batches."""

from __future__ import annotations

from typing import Annotated

import typer

from rgrid.cli.common import with_session
from rgrid.cli.output import (
    JsonOption,
    cost,
    err,
    out,
    phase_text,
    print_json,
    short_when,
)
from rgrid.cli.tables import Column, fitted_table
from rgrid.client import queue
from rgrid.client.parse import parse_pairs
from rgrid.client.session import Session
from rgrid.models.execution import Phase

EXECUTION_COLUMNS = [
    Column("phase", priority=4),
    Column("script", priority=3),
    Column("created", priority=2),
    Column("exit", priority=1, justify="right"),
    Column("cost", priority=1, justify="right"),
    Column("tags", priority=0),
    Column("id", whole=True),  # ids are copied from here: never cut them
]
BATCH_COLUMNS = [
    Column("status", priority=4),
    Column("started", priority=2),
    Column("closed", priority=1),
    Column("id", whole=True),
]


def list_executions(
    status_filter: Annotated[
        Phase | None, typer.Option("--status", "-s", help="Only executions in this phase.")
    ] = None,
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", "-m", help="Only with this KEY=VALUE tag.")
    ] = None,
    project: Annotated[str | None, typer.Option(help="Only this project's executions.")] = None,
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
        if status_filter is Phase.QUEUED:  # waiting runs: next to be claimed first
            waiting = await queue.waiting_in_order(session, session.settings.node_class)
            rows = [
                r
                for r in waiting
                if all(r.tags.get(k) == v for k, v in tags.items()) and project in (None, r.project)
            ]
            rows = rows[:limit]
        else:
            rows = await (await session.ledger()).recent(
                limit=limit, phase=status_filter, tags=tags, project=project
            )
        if json_output:
            print_json([row.model_dump(mode="json") for row in rows])
            return
        if not rows:
            err.print("no executions yet: try `rgrid run examples/hello.py`")
            return
        rows_shown = [
            [
                phase_text(row.phase),
                row.script,
                short_when(row.created_at),
                "-" if row.exit_code is None else str(row.exit_code),
                cost(row),
                ", ".join(f"{k}={v}" for k, v in row.tags.items()),
                row.execution_id,
            ]
            for row in rows
        ]
        table = fitted_table(out, EXECUTION_COLUMNS, rows_shown)
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
    rows = [
        [
            execution.status.name.lower() if execution.status else "-",
            short_when(execution.start_time),
            short_when(execution.close_time),
            execution.id,
        ]
        for execution in found
    ]
    table = fitted_table(out, BATCH_COLUMNS, rows)
    out.print(table)
