"""The ledger's money on a real, throwaway Postgres cluster: reports reconcile, the
script-run record and limit crossings are written once, as on SQLite."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from rgrid.infra.ledger.db import Ledger
from rgrid.models.execution import ExecutionStatus, Phase
from rgrid.models.pool import NodeRecord, NodeState
from rgrid.money.accounting import cost_report, execution_cost, month_start
from rgrid.money.estimate import durations_ms, record_script_run
from rgrid.money.limits import SpendingLimit, record_crossings, set_limit, statuses
from tests.postgres import Cluster

pytestmark = pytest.mark.integration


@pytest.fixture
async def ledger(postgres: Cluster) -> AsyncIterator[Ledger]:
    # The shared throwaway cluster (tests/postgres.py), in a database of this test's own.
    opened = await Ledger.open(await postgres.create_database())
    yield opened
    await opened.close()


async def test_money_on_postgres_reconciles_and_writes_each_fact_once(ledger: Ledger) -> None:
    now = datetime.now(UTC)
    start = max(now - timedelta(hours=2), month_start(now))
    node_id = f"pg-{time.time_ns()}"
    await ledger.save_node(
        NodeRecord(
            node_id=node_id,
            slots=2,
            hourly_price_microns=3_600_000,
            state=NodeState.READY,
            created_at=start,
        )
    )
    for number in range(6):
        began = start + timedelta(minutes=number * 13)
        execution_id = f"exec-{node_id}-{number}"
        await ledger.upsert(
            ExecutionStatus(
                execution_id=execution_id,
                phase=Phase.SUCCEEDED,
                project="pg",
                node_id=node_id,
                created_at=began,
                started_at=began,
                finished_at=began + timedelta(minutes=20),
            )
        )
        await record_script_run(ledger, execution_id, "b" * 64, "local")
        await record_script_run(ledger, execution_id, "b" * 64, "local")  # a retried activity

    report = await cost_report(ledger, None, None, now)
    assert report.executions_microns + report.idle_microns == report.bill_microns
    mine = [c for c in report.executions if c.node_id == node_id]
    assert len(mine) == 6
    # Twenty minutes of one of two slots at 3.60 EUR/h: 0.60 EUR each.
    assert {c.cost_microns for c in mine} == {600_000}
    alone = await execution_cost(ledger, mine[0].execution_id, now)
    assert alone.cost_microns == 600_000
    assert sorted(await durations_ms(ledger, "b" * 64)) == [20 * 60_000] * 6

    await set_limit(ledger, SpendingLimit(project="pg", amount_microns=3_000_000))
    found = await statuses(ledger, now, project="pg")
    assert [s.spent_microns >= 3_600_000 for s in found] == [True]
    first = await record_crossings(ledger, found)
    assert sorted(a.threshold_percent for a in first) == [80, 100]
    assert await record_crossings(ledger, found) == []  # each crossing once
