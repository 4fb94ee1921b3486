"""Control activities (run by the control worker, as local activities): plan, record, cost,
and reading a batch's item manifest."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import structlog
from temporalio import activity

from rgrid import names
from rgrid.cache.service import ResultCache
from rgrid.config_parts import ControlConfig
from rgrid.infra.ledger import Ledger
from rgrid.infra.storage.base import Storage
from rgrid.models.batch import BatchItem
from rgrid.models.control import (
    CostInput,
    CostResult,
    FinishInput,
    LoadItemsInput,
    LoadItemsResult,
    PlanInput,
    PlanResult,
    RecordInput,
)
from rgrid.money import own_cost
from rgrid.money.pricing import NodeBill, SlotUsage

log = structlog.get_logger()


class ControlActivities:
    """Activities that touch the ledger; nodes never get database credentials."""

    def __init__(self, ledger: Ledger, storage: Storage, config: ControlConfig) -> None:
        self._ledger = ledger
        self._storage = storage
        self._cache = ResultCache(ledger, storage, config.cache_retention)
        self._manifests: dict[str, list[BatchItem]] = {}

    @activity.defn(name=names.PLAN)
    async def plan(self, request: PlanInput) -> PlanResult:
        """Before a run: note which script it runs (for later estimates), then ask the
        cache, which returns its key and the cached result when a live entry answers it.
        With a status, records it first (a run's first record, in the same step)."""
        if request.status is not None:
            await self.record(RecordInput(status=request.status))
        await self._note_script_run(request)
        found = await self._cache.lookup(request.spec)
        if found.hit is not None:
            log.info("cache_hit", execution=request.execution_id, source=found.hit.execution_id)
        return PlanResult(cache_key=found.key, hit=found.hit)

    async def _note_script_run(self, request: PlanInput) -> None:
        """A `script_runs` row: estimates read the durations of earlier runs of the same
        script through it. Written in plan because plan runs once, first, for every run
        (a served-from-cache one too) and already holds the spec."""
        spec = request.spec
        await self._ledger.record_script_run(
            request.execution_id, spec.script.sha256, spec.node_class
        )

    @activity.defn(name=names.RECORD)
    async def record(self, request: RecordInput) -> None:
        status = request.status
        await self._ledger.upsert(status)
        if await self._cache.store(status):
            log.info("cache_stored", execution=status.execution_id, key=status.cache_key)
        log.info("execution_recorded", execution=status.execution_id, phase=status.phase.value)

    @activity.defn(name=names.COMPUTE_COST)
    async def compute_cost(self, request: CostInput) -> CostResult:
        """The execution's amortized share so far, through the same accounting as reports:
        provisional while an hour it ran in is open (the ledger's node rows say which)."""
        lease = request.lease
        now = datetime.now(UTC)
        finished = request.finished_at or now
        started = request.started_at or finished - timedelta(seconds=request.slot_seconds)
        usage = SlotUsage(
            execution_id=request.execution_id or lease.lease_id,
            node_id=lease.node_id,
            started_at=started,
            finished_at=max(finished, started),
        )
        # A node the ledger has no row for is priced from its lease, as if started for it.
        stand_in = NodeBill(
            node_id=lease.node_id,
            created_at=started,
            hourly_price_microns=max(lease.hourly_price_microns, 0),
            slots=max(lease.slots, 1),
        )
        # Its own record is not needed: it brings its usage (its end is not recorded yet).
        nodes = await self._ledger.nodes(include_deleted=True)
        hours = own_cost.hours_touched(usage, nodes)
        others = await self._ledger.runs_on({hours.agent}, hours.start, hours.end) if hours else []
        cost = own_cost.execution_cost(
            usage.execution_id, None, usage, nodes, others, now, fallback=stand_in
        )
        return CostResult(cost_microns=cost.cost_microns, provisional=cost.provisional)

    @activity.defn(name=names.FINISH)
    async def finish(self, request: FinishInput) -> CostResult:
        """Price a run that has ended and record it with its cost, in one step."""
        cost = await self.compute_cost(request.cost)
        status = request.status.model_copy(update={"cost_microns": cost.cost_microns})
        await self.record(RecordInput(status=status))
        return cost

    @activity.defn(name=names.LOAD_ITEMS)
    async def load_items(self, request: LoadItemsInput) -> LoadItemsResult:
        items = self._manifests.get(request.manifest_key)
        if items is None:  # manifests never change once written, so keep the last few
            raw = json.loads(await self._storage.get_bytes(request.manifest_key))
            items = [BatchItem.model_validate(item) for item in raw]
            if len(self._manifests) > 16:
                self._manifests.clear()
            self._manifests[request.manifest_key] = items
        return LoadItemsResult(items=[items[i] for i in request.indices])
