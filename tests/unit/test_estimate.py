"""Estimates from earlier runs of the same script, checked against what a batch then costs."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rgrid.activities.costs import cost_report, estimate_runs
from rgrid.config import Settings
from rgrid.infra.ledger import Ledger
from rgrid.models.execution import ExecutionStatus, Phase
from rgrid.models.pool import NodeRecord, NodeState
from rgrid.money.estimate import NodeClassPrice, build_estimate

T0 = datetime(2025, 6, 2, tzinfo=UTC)
SCRIPT = "a" * 64
PRICE = 3_600_000  # 3.60 EUR an hour


async def run_back_to_back(
    ledger: Ledger,
    rng: random.Random,
    runs: int,
    slots: int,
    start: datetime,
    prefix: str,
    batch_id: str | None = None,
) -> datetime:
    """Runs of the script on node n1, `slots` at a time; returns when the last ends."""
    free = [start] * slots
    for number in range(runs):
        slot = min(range(slots), key=lambda s: free[s])
        began = free[slot] + timedelta(milliseconds=rng.randint(50, 400))
        ended = began + timedelta(milliseconds=rng.randint(50_000, 70_000))
        free[slot] = ended
        execution_id = f"exec-{prefix}-{number:03d}"
        await ledger.upsert(
            ExecutionStatus(
                execution_id=execution_id,
                phase=Phase.SUCCEEDED,
                script="job.py",
                batch_id=batch_id,
                node_id="n1",
                created_at=began,
                started_at=began,
                finished_at=ended,
            )
        )
        await ledger.record_script_run(execution_id, SCRIPT, "local")
    return max(free)


def test_a_fifty_item_batch_costs_within_ten_percent_of_its_estimate(tmp_path: Path) -> None:
    async def main() -> None:
        ledger = await Ledger.open("sqlite+aiosqlite://")
        node = NodeRecord(
            node_id="n1",
            slots=4,
            hourly_price_microns=PRICE,
            state=NodeState.READY,
            created_at=T0,
            ready_at=T0,
        )
        await ledger.save_node(node)
        rng = random.Random(50)
        history_end = await run_back_to_back(ledger, rng, 20, 4, T0, "hist")

        found = await estimate_runs(ledger, Settings(home=tmp_path), SCRIPT, 50, 4, 300, "local")
        assert found.history == 20
        assert found.price.slots == 4 and found.price.hourly_price_microns == PRICE

        batch_end = await run_back_to_back(
            ledger, rng, 50, 4, history_end, "batch", batch_id="batch-x"
        )
        await ledger.save_node(
            node.model_copy(update={"state": NodeState.DELETED, "deleted_at": batch_end})
        )
        report = await cost_report(ledger, None, None, batch_end + timedelta(hours=2))
        final = sum(
            c.cost_microns for c in report.executions if c.execution_id.startswith("exec-batch")
        )
        assert not any(c.provisional for c in report.executions)
        assert abs(found.expected_microns - final) <= final // 10
        assert found.high_microns >= found.expected_microns
        await ledger.close()

    asyncio.run(main())


def test_with_no_history_the_estimate_says_it_assumed_the_whole_timeout() -> None:
    price = NodeClassPrice(node_class="local", hourly_price_microns=PRICE, slots=2, source="x")
    found = build_estimate(SCRIPT, 10, 5, price, [], timeout_s=600)
    assert found.history == 0
    assert "no earlier runs" in found.derivation[0] and "upper bound" in found.derivation[0]
    # Ten runs of 600 s on half of a 3.60 EUR/h node: 10 x 0.30 EUR.
    assert found.expected_microns == 3_000_000
    # Five at a time need three 2-slot nodes for two waves of 10 minutes: one hour each.
    assert found.nodes == 3 and found.bill_if_new_nodes_microns == 3 * PRICE


def test_the_billing_hour_rule_counts_every_started_hour_for_new_nodes() -> None:
    price = NodeClassPrice(node_class="cx22", hourly_price_microns=6_000, slots=2, source="x")
    # 61 minutes of work on one node: two started hours.
    found = build_estimate(SCRIPT, 1, 1, price, [61 * 60_000], timeout_s=3600)
    assert found.nodes == 1 and found.bill_if_new_nodes_microns == 12_000
    assert found.expected_microns == 6_000 * 61 * 60_000 // (2 * 3_600_000)
