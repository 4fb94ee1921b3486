"""What exact accounting costs on read, beside the cheapest query a ledger could answer.

    .venv/bin/python bench/cost_report.py [--runs 20000] [--repeat 5]

Builds a SQLite ledger holding a month of a simulated fleet (25 nodes, `--runs`
executions), then times, side by side on that file:
  - `rgrid cost` for the month (cost_report: every billed hour split) against a plain
    `SELECT SUM(cost_microns)` over the same executions (what a ledger without
    amortization would answer);
  - one execution's cost (`rgrid status`, execution_cost) against reading its row;
  - the limit check with a monthly limit set: recomputing the month's spend (what the
    control worker does on its timer) and reading the kept figure (what a run does).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from rgrid.activities.costs import cost_of_execution, cost_report, limit_statuses
from rgrid.infra.ledger import Ledger
from rgrid.models.execution import ExecutionStatus, Phase
from rgrid.models.money import SpendingLimit
from rgrid.models.pool import NodeRecord, NodeState
from rgrid.money.accounting import month_start


async def build(ledger: Ledger, runs: int, now: datetime) -> str:
    rng = random.Random(1)
    start = month_start(now)
    nodes = [
        NodeRecord(
            node_id=f"node-{i:02d}",
            slots=rng.choice([1, 2, 4, 8]),
            hourly_price_microns=rng.choice([5_950, 14_280, 71_993]),
            state=NodeState.READY,
            created_at=start + timedelta(minutes=rng.randint(0, 60)),
        )
        for i in range(25)
    ]
    for node in nodes:
        await ledger.save_node(node)
    span = (now - start).total_seconds()
    last = ""
    for number in range(runs):
        node = rng.choice(nodes)
        began = node.created_at + timedelta(seconds=rng.uniform(0, span - 4000))
        last = f"exec-{number:06d}"
        await ledger.upsert(
            ExecutionStatus(
                execution_id=last,
                phase=Phase.SUCCEEDED,
                node_id=node.node_id,
                project=rng.choice(["default", "geo"]),
                created_at=began,
                started_at=began,
                finished_at=began + timedelta(seconds=rng.uniform(1, 600)),
                cost_microns=rng.randint(0, 5000),
            )
        )
    return last


async def median_s(body: Callable[[], Awaitable[object]], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        await body()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


async def main(runs: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ledger = await Ledger.open(f"sqlite+aiosqlite:///{Path(tmp) / 'ledger.db'}")
        now = datetime.now(UTC)
        if now - month_start(now) < timedelta(days=2):
            now = month_start(now) + timedelta(days=20)  # a month with some history in it
        last = await build(ledger, runs, now)
        since = month_start(now)

        async def plain_sum() -> object:
            async with ledger.engine.connect() as conn:
                query = text("SELECT SUM(cost_microns) FROM executions WHERE created_at >= :s")
                return (await conn.execute(query, {"s": since})).scalar()

        report = await cost_report(ledger, since, None, now)
        assert report.executions_microns + report.idle_microns == report.bill_microns
        full = await median_s(lambda: cost_report(ledger, since, None, now), repeat)
        base = await median_s(plain_sum, repeat)
        print(f"{runs} executions, {len(report.nodes)} nodes, month to date")
        print(f"  cost report (exact, reconciled)  {full * 1000:8.1f} ms")
        print(f"  SELECT SUM(cost_microns)         {base * 1000:8.1f} ms")
        print(f"  ratio                            {full / base:8.1f}x")

        one = await median_s(lambda: cost_of_execution(ledger, last, now), repeat)
        row = await median_s(lambda: ledger.get(last), repeat)
        print(f"  one execution's cost             {one * 1000:8.1f} ms")
        print(f"  reading its row                  {row * 1000:8.1f} ms  ratio {one / row:.1f}x")

        unlimited = await median_s(lambda: limit_statuses(ledger, now), repeat)
        await ledger.set_limit(SpendingLimit(amount_microns=50_000_000))
        limited = await median_s(lambda: limit_statuses(ledger, now), repeat)
        kept = await median_s(lambda: limit_statuses(ledger, now, max_age_s=3600), repeat)
        print(f"  limit check, no limit set        {unlimited * 1000:8.1f} ms")
        print(f"  limit check, spend recomputed    {limited * 1000:8.1f} ms  (the control worker)")
        print(f"  limit check, kept spend fresh    {kept * 1000:8.1f} ms  (before a run)")
        await ledger.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.repeat))
