"""Money read from the ledger: each function reads the records a computation of the pure
money package needs (through the ledger's queries) and hands them over. The control
plane's admission (activities/admission.py), the CLI's commands (client/money.py), the
control worker's limit watch and the tests use these.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from rgrid.config import Settings
from rgrid.errors import NotFoundError
from rgrid.infra.ledger import Ledger
from rgrid.models.money import LimitAlert
from rgrid.money import accounting, estimate, limits, own_cost
from rgrid.money.estimate import Estimate
from rgrid.money.limits import LimitStatus
from rgrid.money.report import CostReport, ExecutionCost

log = structlog.get_logger()


async def cost_report(
    ledger: Ledger,
    since: datetime | None,
    until: datetime | None,
    now: datetime | None = None,
    project: str | None = None,
) -> CostReport:
    """Every billed hour starting in [since, until), split; with `project`, its part only."""
    now = now or datetime.now(UTC)
    every = await ledger.nodes(include_deleted=True)
    span = accounting.report_span(every, since, until, now)
    runs = await ledger.runs_on(span.agents, span.runs_from, span.runs_until)
    cached = await ledger.cached_runs(since, span.until)
    return accounting.cost_report(every, span, runs, cached, since, now, project)


async def cost_of_execution(
    ledger: Ledger, execution_id: str, now: datetime | None = None
) -> ExecutionCost:
    """One execution's amortized cost now, provisional or final (as its report line)."""
    now = now or datetime.now(UTC)
    row = await ledger.run_record(execution_id)
    if row is None:
        raise NotFoundError(f"no execution {execution_id!r}", "see `rgrid list`")
    slot = own_cost.slot_of(execution_id, row, None, now)
    nodes = await ledger.nodes(include_deleted=True) if slot else []
    hours = own_cost.hours_touched(slot, nodes)
    others = await ledger.runs_on({hours.agent}, hours.start, hours.end) if hours else []
    return own_cost.execution_cost(execution_id, row, slot, nodes, others, now)


async def limit_statuses(
    ledger: Ledger,
    now: datetime | None = None,
    project: str | None = None,
    max_age_s: float | None = None,
) -> list[LimitStatus]:
    """Each limit (those that bind `project`, if given) against this month's spend; spends
    computed afresh are kept on the limits (see limits.statuses for `max_age_s`)."""
    now = now or datetime.now(UTC)
    kept = limits.binding(await ledger.kept_spends(), project)
    month = None
    if limits.needs_report(kept, now, max_age_s):
        month = await cost_report(ledger, accounting.month_start(now), None, now)
    found, fresh = limits.statuses(kept, month, now, max_age_s)
    await ledger.keep_spends(fresh, now)
    return found


async def record_crossings(ledger: Ledger, found: list[LimitStatus]) -> list[LimitAlert]:
    """Record each threshold a limit has reached for the first time; the new ones."""
    fresh: list[LimitAlert] = []
    now = datetime.now(UTC)
    for alert in limits.crossings(found):
        if await ledger.record_alert(alert, now):
            # The control worker logs it at warning when it dispatches it; here a command
            # may be the one noticing, and its stderr is for the user's one line.
            log.debug("limit_crossing_recorded", key=alert.key)
            fresh.append(alert)
    return fresh


async def estimate_runs(
    ledger: Ledger,
    settings: Settings,
    script_sha256: str,
    runs: int,
    parallel: int,
    timeout_s: int,
    node_class: str | None = None,
) -> Estimate:
    """Estimate `runs` runs of a script from the ledger's history; starts nothing."""
    price = estimate.class_price(
        await ledger.nodes(include_deleted=True),
        node_class or settings.node_class,
        settings.local_hourly_price_microns,
        settings.local_slots,
    )
    history = await ledger.script_durations_ms(script_sha256, estimate.HISTORY_LIMIT)
    return estimate.build_estimate(script_sha256, runs, parallel, price, history, timeout_s)
