"""What the console's pages cost on the server, beside a plain SQL query of the same rows.

    .venv/bin/python bench/console_pages.py [--runs 10000] [--repeat 5]

Fills a SQLite ledger with `--runs` executions (25 nodes, a month, two projects, tags,
some failures), then times each page in-process through the real ASGI app (routing,
access check, ledger reads, pricing, template rendering; no network), against the plain
SQL a page-less tool would run for the same rows:
  - the executions list, first page of 50 (unfiltered, and filtered by status + project +
    tag) against `SELECT … ORDER BY created_at DESC LIMIT 50` and its `COUNT(*)`;
  - one execution's page (summary, amortized cost, outputs) against `SELECT … WHERE id`.
Prints the median of `--repeat` runs of each (goal: a page within 150 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlmodel.ext.asyncio.session import AsyncSession

from rgrid.client.session import Session
from rgrid.config import load_settings
from rgrid.console.app import create_app
from rgrid.console.security import Access
from rgrid.console.web import ConsoleState
from rgrid.infra.ledger import Ledger
from rgrid.infra.ledger.tables import ExecutionRow, execution_values
from rgrid.models.execution import ExecutionStatus, OutputFile, Phase
from rgrid.models.pool import NodeRecord, NodeState

GOAL_MS = 150.0


async def fill(ledger: Ledger, runs: int, now: datetime) -> str:
    """`runs` executions over the last 30 days on 25 nodes; the id of one in the middle."""
    rng = random.Random(7)
    start = now - timedelta(days=30)
    nodes = [
        NodeRecord(
            node_id=f"node-{i:02d}",
            slots=rng.choice([1, 2, 4]),
            hourly_price_microns=rng.choice([5_950, 14_280]),
            state=NodeState.READY,
            created_at=start,
        )
        for i in range(25)
    ]
    for node in nodes:
        await ledger.save_node(node)
    rows = []
    middle = ""
    for number in range(runs):
        began = start + timedelta(seconds=rng.uniform(0, 30 * 86400 - 700))
        phase = Phase.FAILED if rng.random() < 0.1 else Phase.SUCCEEDED
        status = ExecutionStatus(
            execution_id=f"exec-{number:06d}",
            phase=phase,
            script=rng.choice(["wordcount.py", "resize.py", "train.py"]),
            args=[f"data/file-{number}.csv"],
            tags={"team": rng.choice(["geo", "ml"])},
            project=rng.choice(["default", "geo"]),
            node_id=rng.choice(nodes).node_id,
            attempts=1,
            exit_code=1 if phase is Phase.FAILED else 0,
            created_at=began,
            started_at=began,
            finished_at=began + timedelta(seconds=rng.uniform(1, 600)),
            cost_microns=rng.randint(0, 5000),
            outputs=[
                OutputFile(path=f"out/{i}.txt", size=100 * i, sha256="0" * 64) for i in range(3)
            ],
        )
        if number == runs // 2:
            middle = status.execution_id
        row = ExecutionRow(id=status.execution_id, phase=status.phase.value)
        # The ledger's own row mapping, written in bulk (10,000 upserts would time the fill).
        for key, value in execution_values(status).items():
            setattr(row, key, value)
        rows.append(row)
    async with AsyncSession(ledger.engine) as session:
        session.add_all(rows)
        await session.commit()
    return middle


async def median_ms(body: Callable[[], Awaitable[object]], repeat: int) -> float:
    await body()  # warm: first-use imports and template compilation are not per page
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        await body()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def sql_list(db: Path, filtered: bool, offset: int = 0) -> None:
    where, args = "", ()
    if filtered:
        where = "WHERE phase = ? AND project = ? AND json_extract(tags_json, '$.team') = ?"
        args = ("failed", "geo", "geo")
    with sqlite3.connect(db) as conn:
        conn.execute(
            f"SELECT * FROM executions {where} ORDER BY created_at DESC LIMIT 50 OFFSET ?",
            (*args, offset),
        ).fetchall()
        conn.execute(f"SELECT COUNT(*) FROM executions {where}", args).fetchone()


def sql_choices(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("SELECT DISTINCT project FROM executions").fetchall()
        conn.execute("SELECT DISTINCT script FROM executions").fetchall()


def sql_one(db: Path, execution_id: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("SELECT * FROM executions WHERE id = ?", (execution_id,)).fetchone()


async def main(runs: int, repeat: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="rgrid-bench-console-"))
    db = root / "ledger.db"
    settings = load_settings(home=root, database_url=f"sqlite+aiosqlite:///{db}")
    session = Session(settings)
    middle = await fill(await session.ledger(), runs, datetime.now(UTC))
    access = Access()
    app = create_app(ConsoleState(session=session, access=access), close_session=False)
    headers = {"authorization": f"Bearer {access.token}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:

        def page(url: str) -> Callable[[], Awaitable[object]]:
            async def get() -> None:
                response = await client.get(url, headers=headers)
                assert response.status_code == 200, response.text[:200]

            return get

        filtered = "/executions?status=failed&project=geo&tag=team%3Dgeo"
        cases = [
            ("executions list", page("/executions"), lambda: sql_list(db, False)),
            ("list, filtered", page(filtered), lambda: sql_list(db, True)),
            (
                "list, page 100",
                page("/executions?page=100"),
                lambda: sql_list(db, False, 99 * 50),
            ),
            ("one execution", page(f"/executions/{middle}"), lambda: sql_one(db, middle)),
            ("filter choices", page("/executions/choices"), lambda: sql_choices(db)),
        ]
        print(
            f"{runs} executions in a SQLite ledger; median of {repeat} runs; bytecode "
            f"{'not ' if sys.dont_write_bytecode else ''}cached"
        )
        print(f"{'page':<18}{'console ms':>12}{'plain SQL ms':>14}{'ratio':>8}  goal")
        for name, console, plain in cases:
            page_ms = await median_ms(console, repeat)
            sql_ms = await median_ms(lambda plain=plain: asyncio.to_thread(plain), repeat)
            verdict = "ok" if page_ms <= GOAL_MS else "OVER"
            print(
                f"{name:<18}{page_ms:>12.1f}{sql_ms:>14.2f}{page_ms / sql_ms:>8.1f}  "
                f"≤{GOAL_MS:.0f} {verdict}"
            )
    await session.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    asyncio.run(main(options.runs, options.repeat))
