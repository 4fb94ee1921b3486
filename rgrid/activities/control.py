"""Control activities (run by the control worker, as local activities): plan, record, cost,
and reading a batch's item manifest."""

from __future__ import annotations

import json
from datetime import timedelta

import structlog
from temporalio import activity

from rgrid.activities import names
from rgrid.config import Settings
from rgrid.infra.cache_key import cache_key, cache_parts, default_image
from rgrid.infra.db import Ledger
from rgrid.infra.result_cache import ResultCache
from rgrid.infra.storage import Storage
from rgrid.models import (
    BatchItem,
    CostInput,
    CostResult,
    LoadItemsInput,
    LoadItemsResult,
    PlanInput,
    PlanResult,
    RecordInput,
)

log = structlog.get_logger()

MS_PER_HOUR = 3_600_000


class ControlActivities:
    """Activities that touch the ledger; nodes never get database credentials."""

    def __init__(self, ledger: Ledger, storage: Storage, settings: Settings) -> None:
        self._ledger = ledger
        self._storage = storage
        self._settings = settings
        self._cache = ResultCache(ledger.engine, storage, timedelta(days=settings.retention_days))
        self._manifests: dict[str, list[BatchItem]] = {}

    @activity.defn(name=names.PLAN)
    async def plan(self, request: PlanInput) -> PlanResult:
        """The run's cache key, and the cached result when a live entry answers it."""
        spec = request.spec
        if not spec.cacheable:
            return PlanResult()
        image = default_image(spec, self._settings.python_image, self._settings.node_image)
        key = cache_key(cache_parts(spec, image))
        hit = None if spec.no_cache else await self._cache.lookup(key)
        if hit is not None:
            log.info("cache_hit", execution=request.execution_id, source=hit.execution_id)
        return PlanResult(cache_key=key, hit=hit)

    @activity.defn(name=names.RECORD)
    async def record(self, request: RecordInput) -> None:
        status = request.status
        await self._ledger.upsert(status)
        if await self._cache.store(status):
            log.info("cache_stored", execution=status.execution_id, key=status.cache_key)
        log.info("execution_recorded", execution=status.execution_id, phase=status.phase.value)

    @activity.defn(name=names.COMPUTE_COST)
    async def compute_cost(self, request: CostInput) -> CostResult:
        # Provisional share: the slot's part of the node's hourly price for the time used.
        # Integer microns only; the duration enters once, as whole milliseconds.
        lease = request.lease
        used_ms = round(request.slot_seconds * 1000)
        cost = lease.hourly_price_microns * used_ms // (MS_PER_HOUR * max(lease.slots, 1))
        return CostResult(cost_microns=cost, provisional=True)

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
