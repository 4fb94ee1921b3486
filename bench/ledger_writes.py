"""What writing an execution's row costs, beside the same write as plain SQL.

    .venv/bin/python bench/ledger_writes.py [--rows 1000] [--repeat 5]

Every run writes its row three times on the control worker's hot path (queued, running,
ended). Times, side by side on one SQLite file, the CPU of `Ledger.upsert` for `--rows`
executions (phase by phase, as runs write them) against the same upserts as one fixed
`INSERT … ON CONFLICT DO UPDATE` text statement through the same engine and driver, and
prints the ratio (the ledger's overhead over the SQL it runs).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import TextClause, text

from rgrid.infra.ledger import Ledger
from rgrid.infra.ledger.tables import execution_values
from rgrid.models.execution import ExecutionStatus, Phase

PHASES = [Phase.QUEUED, Phase.RUNNING, Phase.SUCCEEDED]


def statuses(rows: int, run: int) -> list[ExecutionStatus]:
    now = datetime.now(UTC)
    return [
        ExecutionStatus(
            execution_id=f"run{run}-{index}",
            phase=phase,
            script="process.py",
            args=["data/a.csv"],
            tags={"team": "geo"},
            batch_id=f"batch{run}",
            batch_item=index,
            node_id="local-1",
            created_at=now,
        )
        for index in range(rows)
        for phase in PHASES
    ]


@functools.cache
def plain_statement(columns: tuple[str, ...]) -> TextClause:
    """One fixed text statement per set of columns, built once like the ledger's own."""
    updates = ", ".join(f"{key} = excluded.{key}" for key in columns if key != "id")
    return text(
        f"INSERT INTO executions ({', '.join(columns)}) "
        f"VALUES ({', '.join(':' + key for key in columns)}) "
        f"ON CONFLICT (id) DO UPDATE SET {updates} WHERE executions.phase != 'succeeded'"
    )


async def plain_upsert(ledger: Ledger, status: ExecutionStatus) -> None:
    """The same row through one fixed statement: the driver's and the database's share."""
    values = execution_values(status)
    async with ledger.engine.begin() as conn:
        await conn.execute(plain_statement(tuple(values)), values)


async def cpu_ms_per_write(
    write: Callable[[ExecutionStatus], Awaitable[None]], rows: list[ExecutionStatus]
) -> float:
    began = time.process_time()
    for status in rows:
        await write(status)
    return (time.process_time() - began) / len(rows) * 1000


async def main(rows: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ledger = await Ledger.open(f"sqlite+aiosqlite:///{Path(tmp) / 'ledger.db'}")
        try:
            await cpu_ms_per_write(ledger.upsert, statuses(50, -1))  # warm both paths
            await cpu_ms_per_write(lambda s: plain_upsert(ledger, s), statuses(50, -2))
            ours, plain = [], []
            for run in range(repeat):
                ours.append(await cpu_ms_per_write(ledger.upsert, statuses(rows, 2 * run)))
                plain.append(
                    await cpu_ms_per_write(
                        lambda s: plain_upsert(ledger, s), statuses(rows, 2 * run + 1)
                    )
                )
        finally:
            await ledger.close()
    mine, base = statistics.median(ours), statistics.median(plain)
    print(f"{rows * len(PHASES)} writes of execution rows, median of {repeat}")
    print(f"  Ledger.upsert:        {mine:.2f} ms CPU per write")
    print(f"  plain SQL statement:  {base:.2f} ms CPU per write")
    print(f"  ratio: {mine / base:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.repeat))
