"""The ledger's money on a real, throwaway Postgres cluster: reports reconcile, the
script-run record and limit crossings are written once, as on SQLite."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from rgrid.activities.costs import cost_of_execution, cost_report, limit_statuses, record_crossings
from rgrid.infra.ledger import Ledger
from rgrid.models.execution import ExecutionStatus, Phase
from rgrid.models.money import SpendingLimit
from rgrid.models.pool import NodeRecord, NodeState
from rgrid.money.accounting import month_start
from rgrid.money.estimate import HISTORY_LIMIT
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
        await ledger.record_script_run(execution_id, "b" * 64, "local")
        await ledger.record_script_run(execution_id, "b" * 64, "local")  # a retried activity

    report = await cost_report(ledger, None, None, now)
    assert report.executions_microns + report.idle_microns == report.bill_microns
    mine = [c for c in report.executions if c.node_id == node_id]
    assert len(mine) == 6
    # Twenty minutes of one of two slots at 3.60 EUR/h: 0.60 EUR each.
    assert {c.cost_microns for c in mine} == {600_000}
    alone = await cost_of_execution(ledger, mine[0].execution_id, now)
    assert alone.cost_microns == 600_000
    assert sorted(await ledger.script_durations_ms("b" * 64, HISTORY_LIMIT)) == [20 * 60_000] * 6

    await ledger.set_limit(SpendingLimit(project="pg", amount_microns=3_000_000))
    found = await limit_statuses(ledger, now, project="pg")
    assert [s.spent_microns >= 3_600_000 for s in found] == [True]
    first = await record_crossings(ledger, found)
    assert sorted(a.threshold_percent for a in first) == [80, 100]
    assert await record_crossings(ledger, found) == []  # each crossing once
