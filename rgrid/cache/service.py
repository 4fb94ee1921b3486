"""The result cache: cache key -> the successful execution whose outputs answer it.

One service decides for both places that ask: the CLI's fast path (`lookup`, then
`serve` records a new execution answered without a workflow) and the workflow's plan
activity (`lookup`; `store` from record). Entries live in the ledger (its `cache`
table family); the outputs they point at stay where their execution stored them. An entry is
live while it is younger than the retention window and every output it names is still in
storage; anything else is a miss, and the stale entry is dropped on the way.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rgrid.cache.key import spec_key
from rgrid.infra.ledger import Ledger
from rgrid.infra.storage.base import Storage, output_prefix
from rgrid.models.control import CacheHit
from rgrid.models.execution import ExecutionSpec, ExecutionStatus, Phase


@dataclass(frozen=True)
class CacheLookup:
    """What the cache says about a spec: its key (None: the script opts out) and the
    live entry that answers it (None: run it; always None with --no-cache)."""

    key: str | None
    hit: CacheHit | None = None


class ResultCache:
    """Looks up, serves, stores and lists cache entries."""

    def __init__(self, ledger: Ledger, storage: Storage, retention: timedelta) -> None:
        self._ledger = ledger
        self._storage = storage
        self._retention = retention

    async def lookup(self, spec: ExecutionSpec) -> CacheLookup:
        """The spec's key and, unless it asks for --no-cache, the live entry for it."""
        key = spec_key(spec)
        if key is None or spec.no_cache:
            return CacheLookup(key)
        return CacheLookup(key, await self.live_entry(key))

    async def live_entry(self, key: str) -> CacheHit | None:
        """The live entry for `key`, counted as a hit; None (dropping a stale one) if none."""
        hit = await self._ledger.cache_entry(key)
        if hit is None:
            return None
        if not await self._live(hit):
            await self.remove([key])
            return None
        await self._ledger.count_cache_hit(key)
        return hit

    async def serve(self, spec: ExecutionSpec, hit: CacheHit, execution_id: str) -> ExecutionStatus:
        """A new execution answered by `hit`, recorded in the ledger as served from cache:
        no workflow, no node."""
        now = datetime.now(UTC)
        new = ExecutionStatus(
            execution_id=execution_id,
            script=spec.script.name,
            args=spec.args,
            tags=spec.tags,
            project=spec.project,
            created_at=now,
        )
        status = hit.answer(new, now)
        await self._ledger.upsert(status)
        return status

    async def store(self, status: ExecutionStatus) -> bool:
        """Make a successful run the answer for its key (replacing an older one);
        False when the run is not cacheable."""
        if status.cache_key is None or status.cached or status.phase is not Phase.SUCCEEDED:
            return False
        await self._ledger.put_cache_entry(
            CacheHit(
                key=status.cache_key,
                execution_id=status.execution_id,
                script=status.script,
                outputs=status.outputs,
                size_bytes=sum(o.size for o in status.outputs),
                created_at=status.finished_at or datetime.now(UTC),
            )
        )
        return True

    async def entries(self, older_than: timedelta | None = None) -> list[CacheHit]:
        """Every entry, newest first; with `older_than`, only those created before then."""
        return await self._ledger.cache_entries(older_than)

    async def remove(self, keys: list[str]) -> int:
        """Drop entries (their outputs stay with their executions); how many were there."""
        return await self._ledger.delete_cache_entries(keys)

    async def runs_ended(self, key: str) -> int:
        """How many executions with this key ran to an end on a node: the generation
        number that keeps in-flight dedup ids unique over time."""
        return await self._ledger.runs_ended(key)

    async def _live(self, hit: CacheHit) -> bool:
        if datetime.now(UTC) - hit.created_at > self._retention:
            return False
        prefix = output_prefix(hit.execution_id)
        found = await asyncio.gather(*(self._storage.exists(prefix + o.path) for o in hit.outputs))
        return all(found)
