"""The result cache: cache key -> the successful execution whose outputs answer it.

Entries live in the ledger database (table `cache_entries`); the outputs they point at
stay where their execution stored them. An entry is live while it is younger than the
retention window and every output it names is still in storage; anything else is a miss,
and the stale entry is dropped on the way.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rgrid.infra.ledger.tables import CacheEntryRow, ExecutionRow, as_utc
from rgrid.infra.storage.base import Storage, output_prefix
from rgrid.models.control import CacheHit
from rgrid.models.execution import TERMINAL_PHASES, ExecutionStatus, OutputFile, Phase


class ResultCache:
    """Looks up, stores and lists cache entries."""

    def __init__(self, engine: AsyncEngine, storage: Storage, retention: timedelta) -> None:
        self._engine = engine
        self._storage = storage
        self._retention = retention

    async def lookup(self, key: str) -> CacheHit | None:
        """The live entry for `key`, counted as a hit; None (dropping a stale one) if none."""
        async with AsyncSession(self._engine) as session:
            row = await session.get(CacheEntryRow, key)
        if row is None:
            return None
        hit = _to_hit(row)
        if not await self._live(hit):
            await self.remove([key])
            return None
        async with AsyncSession(self._engine) as session:
            row = await session.get(CacheEntryRow, key, with_for_update=True)
            if row is not None:
                row.hits += 1
                row.last_hit_at = datetime.now(UTC)
                session.add(row)
                await session.commit()
        return hit

    async def store(self, status: ExecutionStatus) -> bool:
        """Make a successful run the answer for its key (replacing an older one);
        False when the run is not cacheable."""
        if status.cache_key is None or status.cached or status.phase is not Phase.SUCCEEDED:
            return False
        entry = CacheEntryRow(
            key=status.cache_key,
            execution_id=status.execution_id,
            script=status.script,
            outputs_json=json.dumps([o.model_dump() for o in status.outputs]),
            size_bytes=sum(o.size for o in status.outputs),
            created_at=status.finished_at or datetime.now(UTC),
        )
        async with AsyncSession(self._engine) as session:
            await session.merge(entry)  # a newer run of the key replaces the older
            await session.commit()
        return True

    async def entries(self, older_than: timedelta | None = None) -> list[CacheHit]:
        """Every entry, newest first; with `older_than`, only those created before then."""
        query = select(CacheEntryRow).order_by(col(CacheEntryRow.created_at).desc())
        if older_than is not None:
            query = query.where(col(CacheEntryRow.created_at) < datetime.now(UTC) - older_than)
        async with AsyncSession(self._engine) as session:
            rows = (await session.exec(query)).all()
        return [_to_hit(row) for row in rows]

    async def remove(self, keys: list[str]) -> int:
        """Drop entries (their outputs stay with their executions); how many were there."""
        if not keys:
            return 0
        async with AsyncSession(self._engine) as session:
            result = await session.exec(  # type: ignore[call-overload]
                delete(CacheEntryRow).where(col(CacheEntryRow.key).in_(keys))
            )
            await session.commit()
        return int(result.rowcount)

    async def runs_ended(self, key: str) -> int:
        """How many executions with this key ran to an end on a node: the generation
        number that keeps in-flight dedup ids unique over time."""
        query = select(func.count()).where(
            ExecutionRow.cache_key == key,
            ExecutionRow.cached == False,  # noqa: E712 (SQL, not Python)
            col(ExecutionRow.phase).in_([p.value for p in TERMINAL_PHASES]),
        )
        async with AsyncSession(self._engine) as session:
            return int((await session.exec(query)).one())

    async def _live(self, hit: CacheHit) -> bool:
        if datetime.now(UTC) - hit.created_at > self._retention:
            return False
        prefix = output_prefix(hit.execution_id)
        found = await asyncio.gather(*(self._storage.exists(prefix + o.path) for o in hit.outputs))
        return all(found)


def _to_hit(row: CacheEntryRow) -> CacheHit:
    return CacheHit(
        key=row.key,
        execution_id=row.execution_id,
        script=row.script,
        outputs=[OutputFile.model_validate(o) for o in json.loads(row.outputs_json)],
        size_bytes=row.size_bytes,
        created_at=as_utc(row.created_at),
        hits=row.hits,
    )
