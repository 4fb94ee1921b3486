"""Spending limits: set, shown, checked against the month's spend, crossings recorded once.

A limit applies to one project or, as project "*", to everything. Spend is what the
accounting module reports for the calendar month (UTC) so far: the project's executions
plus the idle of nodes its batches caused (everything, for "*"). A threshold crossing is
a row keyed by project, month, amount and threshold; inserting it is what makes it happen
once, whoever notices it first (a CLI command or the control worker's watch).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rgrid.errors import LimitExceededError
from rgrid.infra.ledger.db import AlertRow, Ledger, LimitRow, as_utc
from rgrid.models.money import LimitAlert
from rgrid.money.accounting import CostReport, cost_report, month_start, restrict
from rgrid.money.pricing import format_microns

log = structlog.get_logger()

ALL_PROJECTS = "*"


class SpendingLimit(BaseModel):
    """A monthly limit on a project's spend (or everything's), and where to alert."""

    project: str = ALL_PROJECTS
    amount_microns: int
    period: str = "month"
    alert_at_percent: int = 80
    webhook: str | None = None


class LimitStatus(BaseModel):
    """A limit and the spend it is measured against right now."""

    limit: SpendingLimit
    spent_microns: int
    period_start: datetime

    @property
    def percent(self) -> int:
        """Whole percent of the limit spent (rounded down)."""
        return self.spent_microns * 100 // max(self.limit.amount_microns, 1)

    @property
    def exceeded(self) -> bool:
        """True once the spend reaches the limit: new runs are refused."""
        return self.spent_microns >= self.limit.amount_microns

    @property
    def warning(self) -> bool:
        """True from the alert threshold on."""
        return self.spent_microns * 100 >= self.limit.alert_at_percent * self.limit.amount_microns


def describe(limit: SpendingLimit) -> str:
    """A limit for humans: `€50.00/month for project geo`."""
    scope = "for all projects" if limit.project == ALL_PROJECTS else f"for project {limit.project}"
    return f"{format_microns(limit.amount_microns)}/{limit.period} {scope}"


async def set_limit(ledger: Ledger, limit: SpendingLimit) -> None:
    """Create or replace the limit of a project (or of everything)."""
    async with AsyncSession(ledger.engine) as session:
        row = await session.get(LimitRow, limit.project)
        row = row or LimitRow(project=limit.project, amount_microns=0, created_at=datetime.now(UTC))
        for key, value in limit.model_dump().items():
            setattr(row, key, value)
        session.add(row)
        await session.commit()


async def remove_limit(ledger: Ledger, project: str) -> bool:
    """Drop a limit; False when there was none."""
    async with AsyncSession(ledger.engine) as session:
        row = await session.get(LimitRow, project)
        if row is None:
            return False
        await session.delete(row)
        await session.commit()
        return True


async def limits(ledger: Ledger) -> list[SpendingLimit]:
    """Every limit, the one on everything first."""
    async with AsyncSession(ledger.engine) as session:
        rows = (await session.exec(select(LimitRow))).all()
    found = [SpendingLimit.model_validate(row.model_dump()) for row in rows]
    return sorted(found, key=lambda lim: (lim.project != ALL_PROJECTS, lim.project))


async def statuses(
    ledger: Ledger,
    now: datetime | None = None,
    project: str | None = None,
    max_age_s: float | None = None,
) -> list[LimitStatus]:
    """Each limit (those that bind `project`, if given) against this month's spend.

    The spend is computed from the ledger and kept on the limit's row; with `max_age_s`
    a kept figure that young is used instead (the control worker refreshes them on a
    timer, so a command need not price the whole month before every run)."""
    now = now or datetime.now(UTC)
    start = month_start(now)
    whole: CostReport | None = None
    found = []
    async with AsyncSession(ledger.engine) as session:
        rows = list((await session.exec(select(LimitRow))).all())
        rows.sort(key=lambda row: (row.project != ALL_PROJECTS, row.project))
        for row in rows:
            if project is not None and row.project not in (ALL_PROJECTS, project):
                continue
            limit = SpendingLimit.model_validate(row.model_dump())
            checked = as_utc(row.checked_at)
            if (
                max_age_s is not None
                and checked is not None
                and start <= checked
                and now - checked <= timedelta(seconds=max_age_s)
            ):
                spent = row.spent_microns
            else:
                whole = whole or await cost_report(ledger, start, None, now)
                part = whole if row.project == ALL_PROJECTS else restrict(whole, row.project)
                spent = part.bill_microns
                row.spent_microns, row.checked_at = spent, now
                session.add(row)
            found.append(LimitStatus(limit=limit, spent_microns=spent, period_start=start))
        await session.commit()
    return found


def alert_key(status: LimitStatus, threshold: int) -> str:
    """Names the limit, its period and the threshold: the same crossing, the same key."""
    limit = status.limit
    return (
        f"{limit.project}-{status.period_start:%Y-%m}-{limit.amount_microns}-{threshold}"
    ).replace("*", "all")


async def record_crossings(ledger: Ledger, found: list[LimitStatus]) -> list[LimitAlert]:
    """Record each threshold a limit has reached for the first time; the new ones."""
    fresh: list[LimitAlert] = []
    now = datetime.now(UTC)
    for status in found:
        limit = status.limit
        for threshold in sorted({limit.alert_at_percent, 100}):
            if status.spent_microns * 100 < threshold * limit.amount_microns:
                continue
            alert = LimitAlert(
                key=alert_key(status, threshold),
                project=limit.project,
                threshold_percent=threshold,
                spent_microns=status.spent_microns,
                limit_microns=limit.amount_microns,
                period=limit.period,
                period_start=status.period_start,
                webhook=limit.webhook,
            )
            if await _insert_once(ledger, alert, now):
                # The control worker logs it at warning when it dispatches it; here a command
                # may be the one noticing, and its stderr is for the user's one line.
                log.debug("limit_crossing_recorded", key=alert.key)
                fresh.append(alert)
    return fresh


async def _insert_once(ledger: Ledger, alert: LimitAlert, now: datetime) -> bool:
    row = AlertRow(
        key=alert.key,
        project=alert.project,
        threshold_percent=alert.threshold_percent,
        spent_microns=alert.spent_microns,
        limit_microns=alert.limit_microns,
        period_start=alert.period_start,
        created_at=now,
        webhook=alert.webhook,
    )
    async with AsyncSession(ledger.engine) as session:
        session.add(row)
        try:
            await session.commit()
        except IntegrityError:  # someone noticed this crossing first
            return False
    return True


async def take_unshown(ledger: Ledger) -> list[LimitAlert]:
    """Crossings no command has shown yet; they are marked shown."""
    async with AsyncSession(ledger.engine) as session:
        query = select(AlertRow).where(col(AlertRow.shown_at).is_(None))
        rows = sorted((await session.exec(query)).all(), key=lambda r: r.created_at)
        taken = [_alert(row) for row in rows]  # before commit expires the rows
        for row in rows:
            row.shown_at = datetime.now(UTC)
            session.add(row)
        if rows:
            await session.commit()
    return taken


async def undispatched(ledger: Ledger) -> list[LimitAlert]:
    """Crossings the control worker has not logged (and sent to a webhook) yet."""
    async with AsyncSession(ledger.engine) as session:
        query = select(AlertRow).where(col(AlertRow.dispatched_at).is_(None))
        rows = (await session.exec(query)).all()
    return [_alert(row) for row in rows]


async def mark_dispatched(ledger: Ledger, key: str) -> None:
    """The crossing's AlertWorkflow is started: the engine delivers it from here."""
    async with AsyncSession(ledger.engine) as session:
        row = await session.get(AlertRow, key)
        if row is not None:
            row.dispatched_at = datetime.now(UTC)
            session.add(row)
            await session.commit()


def _alert(row: AlertRow) -> LimitAlert:
    start = row.period_start
    return LimitAlert(
        key=row.key,
        project=row.project,
        threshold_percent=row.threshold_percent,
        spent_microns=row.spent_microns,
        limit_microns=row.limit_microns,
        period_start=as_utc(start),
        webhook=row.webhook,
    )


def alert_text(alert: LimitAlert) -> str:
    """One line about a crossing."""
    scope = "all projects" if alert.project == ALL_PROJECTS else f"project {alert.project}"
    return (
        f"the spending limit {format_microns(alert.limit_microns)}/month for {scope} is "
        f"{alert.threshold_percent}% used ({format_microns(alert.spent_microns)} spent since "
        f"{alert.period_start:%Y-%m-%d})"
    )


def refuse_if_exceeded(found: list[LimitStatus], what: str = "new runs") -> None:
    """Raise LimitExceededError when a limit that binds this run is used up."""
    for status in found:
        if status.exceeded:
            limit = status.limit
            option = "" if limit.project == ALL_PROJECTS else f" --project {limit.project}"
            raise LimitExceededError(
                f"{what} refused: the spending limit {describe(limit)} is used up "
                f"({format_microns(status.spent_microns)} spent this month)",
                f'raise it with `rgrid cost set-limit "€…/month"{option}` or drop it with '
                f"`rgrid cost remove-limit{option}`; running work goes on",
            )
