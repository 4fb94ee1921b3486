"""Spending limits: measured against the month's spend, crossings named once.

A limit applies to one project or, as project "*", to everything. Spend is what the
accounting reports for the calendar month (UTC) so far: the project's executions plus the
idle of nodes its batches caused (everything, for "*"). A threshold crossing is keyed by
project, month, amount and threshold; the ledger records each key once, so whoever
notices it first (a CLI command or the control worker's watch) makes it happen, once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel

from rgrid.models.money import ALL_PROJECTS, KeptSpend, LimitAlert, SpendingLimit
from rgrid.money.accounting import month_start
from rgrid.money.breakdown import restrict
from rgrid.money.report import CostReport


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


def binding(kept: list[KeptSpend], project: str | None) -> list[KeptSpend]:
    """The limits that bind `project` (all of them without one), the one on everything
    first."""
    found = [k for k in kept if project is None or k.limit.project in (ALL_PROJECTS, project)]
    return sorted(found, key=lambda k: (k.limit.project != ALL_PROJECTS, k.limit.project))


def _kept_is_fresh(kept: KeptSpend, now: datetime, max_age_s: float | None) -> bool:
    checked = kept.checked_at
    return (
        max_age_s is not None
        and checked is not None
        and month_start(now) <= checked
        and now - checked <= timedelta(seconds=max_age_s)
    )


def needs_report(kept: list[KeptSpend], now: datetime, max_age_s: float | None) -> bool:
    """True when some limit's kept spend is too old to decide on: the month must be priced."""
    return not all(_kept_is_fresh(k, now, max_age_s) for k in kept)


def statuses(
    kept: list[KeptSpend], month: CostReport | None, now: datetime, max_age_s: float | None
) -> tuple[list[LimitStatus], dict[str, int]]:
    """Each limit against this month's spend, and the spends computed afresh (project ->
    microns) to keep on the limits.

    With `max_age_s` a kept figure that young is used instead (the control worker
    refreshes them on a timer, so a command need not price the whole month before every
    run); `month` is the month's report, needed when `needs_report`."""
    start = month_start(now)
    found, fresh = [], {}
    for spend in kept:
        if _kept_is_fresh(spend, now, max_age_s):
            spent = spend.spent_microns
        else:
            if month is None:
                raise ValueError("a kept spend is stale: the month's report is needed")
            project = spend.limit.project
            part = month if project == ALL_PROJECTS else restrict(month, project)
            spent = fresh[project] = part.bill_microns
        found.append(LimitStatus(limit=spend.limit, spent_microns=spent, period_start=start))
    return found, fresh


def alert_key(status: LimitStatus, threshold: int) -> str:
    """Names the limit, its period and the threshold: the same crossing, the same key."""
    limit = status.limit
    return (
        f"{limit.project}-{status.period_start:%Y-%m}-{limit.amount_microns}-{threshold}"
    ).replace("*", "all")


def crossings(found: list[LimitStatus]) -> list[LimitAlert]:
    """Every threshold the limits have reached (the ledger keeps the first of each)."""
    alerts = []
    for status in found:
        limit = status.limit
        for threshold in sorted({limit.alert_at_percent, 100}):
            if status.spent_microns * 100 < threshold * limit.amount_microns:
                continue
            alerts.append(
                LimitAlert(
                    key=alert_key(status, threshold),
                    project=limit.project,
                    threshold_percent=threshold,
                    spent_microns=status.spent_microns,
                    limit_microns=limit.amount_microns,
                    period=limit.period,
                    period_start=status.period_start,
                    webhook=limit.webhook,
                )
            )
    return alerts
