"""The executions table: one row per execution, written as it moves through its phases.

Rows only move forward: a late or replayed write never takes a terminal execution back
to a running phase.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import ColumnElement
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rgrid.errors import NotFoundError
from rgrid.infra.ledger.base import LedgerPart
from rgrid.infra.ledger.tables import ExecutionRow, as_utc, execution_values
from rgrid.models.execution import TERMINAL_PHASES, ExecutionStatus, Phase
from rgrid.models.money import RunRecord

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ENDED = sorted(phase.value for phase in TERMINAL_PHASES)  # the phase column's terminal values


def phases_before(phase: Phase) -> set[Phase]:
    """The phases a row may be in for `phase` to be written over it: itself, and the
    earlier non-terminal ones."""
    order = list(Phase)
    if phase.terminal:
        return {phase, *(p for p in order if not p.terminal)}
    return {p for p in order[: order.index(phase) + 1]}


class ExecutionRows(LedgerPart):
    """Reads and writes execution rows."""

    async def upsert(self, status: ExecutionStatus) -> None:
        """Write an execution's state; the phase only moves forward, and a terminal row
        takes no other phase (a late or replayed event changes nothing)."""
        # One atomic statement, so concurrent writers cannot interleave a read and a write.
        await self._upsert(
            ExecutionRow,
            execution_values(status),
            lambda: col(ExecutionRow.phase).in_([p.value for p in phases_before(status.phase)]),
            where_key=status.phase,
        )

    async def get(self, execution_id: str) -> ExecutionStatus:
        """One execution, or NotFoundError."""
        async with AsyncSession(self.engine) as session:
            row = await session.get(ExecutionRow, execution_id)
        if row is None:
            raise NotFoundError(
                f"no execution {execution_id!r}", "see `rgrid list` for recent executions"
            )
        return row.to_status()

    async def recent(
        self,
        limit: int = 20,
        phase: Phase | None = None,
        tags: dict[str, str] | None = None,
        project: str | None = None,
    ) -> list[ExecutionStatus]:
        """Newest executions first, filtered by phase, tags and project."""
        query = select(ExecutionRow).order_by(col(ExecutionRow.created_at).desc())
        if phase is not None:
            query = query.where(ExecutionRow.phase == phase.value)
        if project is not None:
            query = query.where(ExecutionRow.project == project)
        async with AsyncSession(self.engine) as session:
            rows = (await session.exec(query)).all()
        found = []
        for row in rows:
            status = row.to_status()
            if tags and any(status.tags.get(k) != v for k, v in tags.items()):
                continue
            found.append(status)
            if len(found) >= limit:
                break
        return found

    async def live(self) -> list[ExecutionStatus]:
        """Executions that have not ended, oldest first."""
        query = (
            select(ExecutionRow)
            .where(col(ExecutionRow.phase).not_in(ENDED))
            .order_by(col(ExecutionRow.created_at), col(ExecutionRow.id))
        )
        async with AsyncSession(self.engine) as session:
            return [row.to_status() for row in (await session.exec(query)).all()]

    async def waiting(self, node_class: str | None = None) -> list[ExecutionStatus]:
        """Executions waiting for a node (of one class), oldest first."""
        query = (
            select(ExecutionRow)
            .where(ExecutionRow.phase == Phase.QUEUED.value)
            .order_by(col(ExecutionRow.created_at), col(ExecutionRow.id))
        )
        if node_class is not None:
            query = query.where(ExecutionRow.node_class == node_class)
        async with AsyncSession(self.engine) as session:
            return [row.to_status() for row in (await session.exec(query)).all()]

    async def of_batch(self, batch_id: str) -> list[ExecutionStatus]:
        """Every execution of a batch, oldest first (retries come after the first try)."""
        query = (
            select(ExecutionRow)
            .where(ExecutionRow.batch_id == batch_id)
            .order_by(col(ExecutionRow.created_at))
        )
        async with AsyncSession(self.engine) as session:
            rows = (await session.exec(query)).all()
        return [row.to_status() for row in rows]

    async def ended_of_batch(self, batch_id: str, known: set[str]) -> list[ExecutionStatus]:
        """A batch's ended executions other than `known`, oldest first: what a follower has
        not seen yet. Reads one column of each ended row, and whole rows only for the news,
        so following a 10,000-item batch is not quadratic in its rows."""
        ended = select(ExecutionRow.id).where(
            ExecutionRow.batch_id == batch_id, col(ExecutionRow.phase).in_(ENDED)
        )
        found: list[ExecutionStatus] = []
        async with AsyncSession(self.engine) as session:
            news = [id_ for id_ in (await session.exec(ended)).all() if id_ not in known]
            for start in range(0, len(news), 500):  # within any database's bound parameters
                query = select(ExecutionRow).where(
                    col(ExecutionRow.id).in_(news[start : start + 500])
                )
                found.extend(row.to_status() for row in (await session.exec(query)).all())
        return sorted(found, key=lambda status: status.created_at or EPOCH)

    # What accounting reads: plain tuples of a few columns.

    async def run_record(self, execution_id: str) -> RunRecord | None:
        """One execution's accounting columns, or None."""
        found = await self._run_records(col(ExecutionRow.id) == execution_id)
        return found[0] if found else None

    async def runs_on(self, agent_ids: set[str], start: datetime, end: datetime) -> list[RunRecord]:
        """Executions on these agents whose slot time may touch [start, end)."""
        if not agent_ids:
            return []
        rows = await self._run_records(
            col(ExecutionRow.node_id).in_(sorted(agent_ids)),
            col(ExecutionRow.started_at) < end,
            col(ExecutionRow.finished_at).is_(None) | (col(ExecutionRow.finished_at) >= start),
        )
        # Again in Python: SQLite compares the stored text, which is exact only for UTC values.
        return [
            row
            for row in rows
            if row.started_at is not None
            and row.started_at < end
            and (row.finished_at is None or row.finished_at >= start)
        ]

    async def cached_runs(self, since: datetime | None, until: datetime) -> list[RunRecord]:
        """Executions served from the cache, created in [since, until)."""
        conditions: list[ColumnElement[bool]] = [
            col(ExecutionRow.cached).is_(True),
            col(ExecutionRow.created_at) < until,
        ]
        if since is not None:
            conditions.append(col(ExecutionRow.created_at) >= since)
        return [
            row
            for row in await self._run_records(*conditions)
            if row.created_at is not None
            and row.created_at < until
            and (since is None or row.created_at >= since)
        ]

    async def _run_records(self, *conditions: ColumnElement[bool]) -> list[RunRecord]:
        table = ExecutionRow.__table__  # type: ignore[attr-defined]
        query = sa_select(*(table.c[name] for name in RunRecord._fields)).where(*conditions)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            RunRecord._make(
                as_utc(value) if isinstance(value, datetime) else value for value in row
            )
            for row in rows
        ]
