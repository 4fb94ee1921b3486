"""Control activities (run by the control worker, as local activities): plan, record, cost."""

from __future__ import annotations

import structlog
from temporalio import activity

from rgrid.activities import names
from rgrid.infra.db import Ledger
from rgrid.models import CostInput, CostResult, PlanInput, PlanResult, RecordInput

log = structlog.get_logger()

MS_PER_HOUR = 3_600_000


class ControlActivities:
    """Activities that touch the ledger; nodes never get database credentials."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    @activity.defn(name=names.PLAN)
    async def plan(self, request: PlanInput) -> PlanResult:
        # Cache lookup and cost estimates arrive with their own issues; a plan is free now.
        return PlanResult(estimate_microns=0)

    @activity.defn(name=names.RECORD)
    async def record(self, request: RecordInput) -> None:
        await self._ledger.upsert(request.status)
        log.info(
            "execution_recorded",
            execution=request.status.execution_id,
            phase=request.status.phase.value,
        )

    @activity.defn(name=names.COMPUTE_COST)
    async def compute_cost(self, request: CostInput) -> CostResult:
        # Provisional share: the slot's part of the node's hourly price for the time used.
        # Integer microns only; the duration enters once, as whole milliseconds.
        lease = request.lease
        used_ms = round(request.slot_seconds * 1000)
        cost = lease.hourly_price_microns * used_ms // (MS_PER_HOUR * max(lease.slots, 1))
        return CostResult(cost_microns=cost, provisional=True)
