"""The embedded stack records its local nodes, so local runs are accounted like machines."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rgrid.activities.costs import cost_of_execution
from rgrid.config import Settings
from rgrid.infra.ledger import Ledger
from rgrid.models.execution import ExecutionStatus, Phase
from rgrid.models.pool import NodeState
from rgrid.worker.local_nodes import close_local_nodes, record_local_nodes


def test_a_stack_that_died_is_closed_at_its_last_run_and_the_new_life_is_billed(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path, local_slots=2, local_hourly_price_microns=7_200)

    async def main() -> None:
        ledger = await Ledger.open("sqlite+aiosqlite://")
        first = await record_local_nodes(ledger, settings, ["local-1"])
        assert first[0].node_id.startswith("local-1@") and first[0].deleted_at is None
        # That life began an hour ago, and ran one script soon after.
        born = first[0].created_at - timedelta(hours=1)
        first[0] = first[0].model_copy(update={"created_at": born, "ready_at": born})
        await ledger.save_node(first[0])
        started = born + timedelta(seconds=1)
        await ledger.upsert(
            ExecutionStatus(
                execution_id="exec-1",
                phase=Phase.SUCCEEDED,
                node_id="local-1",
                created_at=started,
                started_at=started,
                finished_at=started + timedelta(seconds=3),
            )
        )
        # The stack died without stopping; the next start closes the open life.
        second = await record_local_nodes(ledger, settings, ["local-1"])
        rows = {n.node_id: n for n in await ledger.nodes(include_deleted=True)}
        dead = rows[first[0].node_id]
        assert dead.state is NodeState.DELETED
        assert dead.deleted_at == started + timedelta(seconds=3)  # its last sign of life
        assert rows[second[0].node_id].deleted_at is None
        assert rows[second[0].node_id].slots == 2
        assert rows[second[0].node_id].hourly_price_microns == 7_200

        # The run belongs to the first life, whose bill is final: 3 s of one of 2 slots.
        cost = await cost_of_execution(ledger, "exec-1", datetime.now(UTC))
        assert cost.node_id == first[0].node_id and not cost.provisional
        assert cost.cost_microns == 7_200 * 3 // (2 * 3600)

        await close_local_nodes(ledger, second)
        assert all(n.deleted_at for n in await ledger.nodes(include_deleted=True))
        await ledger.close()

    asyncio.run(main())
