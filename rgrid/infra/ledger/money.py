"""The money tables: which script each execution ran (estimates read its durations),
spending limits with the spend last computed for them, and limit crossings (alerts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rgrid.infra.ledger.base import LedgerPart
from rgrid.infra.ledger.tables import AlertRow, ExecutionRow, LimitRow, ScriptRunRow, as_utc
from rgrid.models.execution import Phase
from rgrid.models.money import KeptSpend, LimitAlert, SpendingLimit


class MoneyRows(LedgerPart):
    """Reads and writes script runs, spending limits and alerts."""

    async def record_script_run(
        self, execution_id: str, script_sha256: str, node_class: str
    ) -> None:
        """Remember which script an execution runs (idempotent: a retried call changes nothing)."""
        # One statement, no read first: this runs once per execution, on the hot path.
        await self._insert_if_absent(
            ScriptRunRow,
            {
                "execution_id": execution_id,
                "script_sha256": script_sha256,
                "node_class": node_class,
            },
        )

    async def script_durations_ms(self, script_sha256: str, limit: int) -> list[int]:
        """Run times of the newest `limit` successful runs of this script, served from
        cache excluded."""
        query = (
            select(ExecutionRow)
            .join(ScriptRunRow, col(ScriptRunRow.execution_id) == col(ExecutionRow.id))
            .where(
                ScriptRunRow.script_sha256 == script_sha256,
                ExecutionRow.phase == Phase.SUCCEEDED.value,
                ExecutionRow.cached == False,  # noqa: E712
            )
            .order_by(col(ExecutionRow.created_at).desc())
            .limit(limit)
        )
        async with AsyncSession(self.engine) as session:
            rows = (await session.exec(query)).all()
        return [
            (row.finished_at - row.started_at) // timedelta(milliseconds=1)
            for row in rows
            if row.started_at is not None and row.finished_at is not None
        ]

    async def set_limit(self, limit: SpendingLimit) -> None:
        """Create or replace the limit of a project (or of everything)."""
        async with AsyncSession(self.engine) as session:
            row = await session.get(LimitRow, limit.project)
            row = row or LimitRow(
                project=limit.project, amount_microns=0, created_at=datetime.now(UTC)
            )
            for key, value in limit.model_dump().items():
                setattr(row, key, value)
            session.add(row)
            await session.commit()

    async def remove_limit(self, project: str) -> bool:
        """Drop a limit; False when there was none."""
        async with AsyncSession(self.engine) as session:
            row = await session.get(LimitRow, project)
            if row is None:
                return False
            await session.delete(row)
            await session.commit()
            return True

    async def kept_spends(self) -> list[KeptSpend]:
        """Every limit, with the spend last computed for it."""
        async with AsyncSession(self.engine) as session:
            rows = (await session.exec(select(LimitRow))).all()
        return [
            KeptSpend(
                limit=SpendingLimit.model_validate(row.model_dump()),
                spent_microns=row.spent_microns,
                checked_at=as_utc(row.checked_at),
            )
            for row in rows
        ]

    async def keep_spends(self, spent: dict[str, int], checked_at: datetime) -> None:
        """Keep freshly computed spends (project -> microns) on their limits' rows."""
        if not spent:
            return
        async with AsyncSession(self.engine) as session:
            for project, microns in spent.items():
                row = await session.get(LimitRow, project)
                if row is not None:  # removed meanwhile: nothing to keep
                    row.spent_microns, row.checked_at = microns, checked_at
                    session.add(row)
            await session.commit()

    async def record_alert(self, alert: LimitAlert, now: datetime) -> bool:
        """Insert a crossing unless its key is recorded; True when this call recorded it
        (whoever notices a crossing first)."""
        values = alert.model_dump(include=_ALERT_COLUMNS)
        return await self._insert_if_absent(AlertRow, {**values, "created_at": now})

    async def take_unshown_alerts(self) -> list[LimitAlert]:
        """Crossings no command has shown yet, oldest first; they are marked shown."""
        async with AsyncSession(self.engine) as session:
            query = select(AlertRow).where(col(AlertRow.shown_at).is_(None))
            rows = sorted((await session.exec(query)).all(), key=lambda r: r.created_at)
            taken = [_alert(row) for row in rows]  # before commit expires the rows
            for row in rows:
                row.shown_at = datetime.now(UTC)
                session.add(row)
            if rows:
                await session.commit()
        return taken

    async def undispatched_alerts(self) -> list[LimitAlert]:
        """Crossings the control worker has not logged (and sent to a webhook) yet."""
        async with AsyncSession(self.engine) as session:
            query = select(AlertRow).where(col(AlertRow.dispatched_at).is_(None))
            rows = (await session.exec(query)).all()
        return [_alert(row) for row in rows]

    async def mark_alert_dispatched(self, key: str) -> None:
        """The crossing's AlertWorkflow is started: the engine delivers it from here."""
        async with AsyncSession(self.engine) as session:
            row = await session.get(AlertRow, key)
            if row is not None:
                row.dispatched_at = datetime.now(UTC)
                session.add(row)
                await session.commit()


_ALERT_COLUMNS = {
    "key",
    "project",
    "threshold_percent",
    "spent_microns",
    "limit_microns",
    "period_start",
    "webhook",
}


def _alert(row: AlertRow) -> LimitAlert:
    values = row.model_dump(include=_ALERT_COLUMNS)
    return LimitAlert.model_validate({**values, "period_start": as_utc(row.period_start)})
