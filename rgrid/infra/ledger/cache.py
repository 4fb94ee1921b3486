"""The result cache's table family: `cache_entries`, and how many runs of a key the
`executions` table has seen end. Entries go in and out as CacheHit models."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rgrid.infra.ledger.base import LedgerPart
from rgrid.infra.ledger.tables import CacheEntryRow, ExecutionRow, as_utc
from rgrid.models.control import CacheHit
from rgrid.models.execution import TERMINAL_PHASES, OutputFile


class CacheRows(LedgerPart):
    """Reads and writes cache entries; what is live is the cache service's business."""

    async def cache_entry(self, key: str) -> CacheHit | None:
        """The entry for `key`, live or not."""
        async with AsyncSession(self.engine) as session:
            row = await session.get(CacheEntryRow, key)
        return None if row is None else _to_hit(row)

    async def count_cache_hit(self, key: str) -> None:
        """One more hit for the entry, now (nothing if it went meanwhile)."""
        async with AsyncSession(self.engine) as session:
            row = await session.get(CacheEntryRow, key, with_for_update=True)
            if row is not None:
                row.hits += 1
                row.last_hit_at = datetime.now(UTC)
                session.add(row)
                await session.commit()

    async def put_cache_entry(self, entry: CacheHit) -> None:
        """Make `entry` the answer for its key, replacing an older one."""
        row = CacheEntryRow(
            key=entry.key,
            execution_id=entry.execution_id,
            script=entry.script,
            outputs_json=json.dumps([o.model_dump() for o in entry.outputs]),
            size_bytes=entry.size_bytes,
            created_at=entry.created_at,
        )
        async with AsyncSession(self.engine) as session:
            await session.merge(row)
            await session.commit()

    async def cache_entries(self, older_than: timedelta | None = None) -> list[CacheHit]:
        """Every entry, newest first; with `older_than`, only those created before then."""
        query = select(CacheEntryRow).order_by(col(CacheEntryRow.created_at).desc())
        if older_than is not None:
            query = query.where(col(CacheEntryRow.created_at) < datetime.now(UTC) - older_than)
        async with AsyncSession(self.engine) as session:
            rows = (await session.exec(query)).all()
        return [_to_hit(row) for row in rows]

    async def delete_cache_entries(self, keys: list[str]) -> int:
        """Drop entries; how many were there."""
        if not keys:
            return 0
        async with AsyncSession(self.engine) as session:
            result = await session.exec(  # type: ignore[call-overload]
                delete(CacheEntryRow).where(col(CacheEntryRow.key).in_(keys))
            )
            await session.commit()
        return int(result.rowcount)

    async def runs_ended(self, key: str) -> int:
        """How many executions with this key ran to an end on a node."""
        query = select(func.count()).where(
            ExecutionRow.cache_key == key,
            ExecutionRow.cached == False,  # noqa: E712 (SQL, not Python)
            col(ExecutionRow.phase).in_([p.value for p in TERMINAL_PHASES]),
        )
        async with AsyncSession(self.engine) as session:
            return int((await session.exec(query)).one())


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
