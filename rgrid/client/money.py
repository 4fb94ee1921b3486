"""What the CLI asks about money: reports, breakdowns, limits, estimates, and the checks
that run before anything starts (spending limits, --budget)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from rgrid.activities import costs
from rgrid.client.session import Session
from rgrid.errors import UserInputError
from rgrid.infra.ledger import Ledger
from rgrid.infra.storage.base import sha256_file
from rgrid.models.money import ALL_PROJECTS, LimitAlert, SpendingLimit
from rgrid.money import admission
from rgrid.money.admission import describe as describe  # the CLI names limits with it
from rgrid.money.estimate import Estimate
from rgrid.money.limits import LimitStatus
from rgrid.money.pricing import format_microns, parse_money
from rgrid.money.report import CostReport, ExecutionCost


class BatchCost(BaseModel):
    """A batch's cost: its executions' shares and the idle of the nodes it caused."""

    batch_id: str
    executions: list[ExecutionCost] = Field(default_factory=list)
    executions_microns: int = 0
    idle_microns: int = 0
    node_hours: int = 0
    provisional: bool = False


async def report(
    session: Session, since: datetime | None, until: datetime | None, project: str | None
) -> CostReport:
    """The cost report of a window."""
    return await costs.cost_report(await session.ledger(), since, until, datetime.now(UTC), project)


async def of_execution(session: Session, execution_id: str) -> ExecutionCost:
    """One execution's cost now, provisional or final."""
    return await costs.cost_of_execution(await session.ledger(), execution_id)


async def of_batch(session: Session, batch_id: str) -> BatchCost:
    """A batch's executions and the idle it caused, over every hour so far."""
    ledger = await session.ledger()
    rows = await ledger.of_batch(batch_id)
    members = {e.execution_id for e in rows}
    if not members:
        raise UserInputError(f"no batch {batch_id!r} in the ledger", "see `rgrid list --batches`")
    # An hour holding its runs starts at most an hour before the first of them was created.
    first = min((e.created_at for e in rows if e.created_at), default=None)
    since = first - timedelta(hours=1) if first else None
    whole = await costs.cost_report(ledger, since, None, datetime.now(UTC))
    mine = [c for c in whole.executions if c.execution_id in members]
    caused = [n for n in whole.nodes if n.caused_by == batch_id]
    return BatchCost(
        batch_id=batch_id,
        executions=mine,
        executions_microns=sum(c.cost_microns for c in mine),
        idle_microns=sum(n.idle_microns for n in caused),
        node_hours=sum(n.hours for n in caused) or sum(c.node_hours for c in mine),
        provisional=any(c.provisional for c in mine) or any(n.open_hours for n in caused),
    )


async def of_batch_or_none(session: Session, batch_id: str) -> BatchCost | None:
    """A batch's cost, or None while the ledger has none of its executions yet."""
    try:
        return await of_batch(session, batch_id)
    except UserInputError:
        return None


async def check_limits(session: Session, project: str, what: str = "new runs") -> list[str]:
    """Before a run: note new crossings, return the lines to warn with, and refuse (raise
    LimitExceededError) when a limit binding this project is used up."""
    ledger = await session.ledger()
    # The control worker refreshes the spend every limit_check_s; fresher than twice that
    # is good enough to decide on, and spares pricing the whole month before each run.
    found = await costs.limit_statuses(
        ledger, project=project, max_age_s=2 * session.settings.limit_check_s
    )
    if found:
        await costs.record_crossings(ledger, found)
    # Refused first: the one-line refusal stays one line; crossings show at the next command.
    refuse_if_exceeded(found, what)
    return await _unshown(ledger)


async def pending_alerts(session: Session) -> list[str]:
    """Crossings no command has shown yet (each is shown once)."""
    ledger = await session.ledger()
    found = await costs.limit_statuses(ledger)
    if found:
        await costs.record_crossings(ledger, found)
    return await _unshown(ledger)


async def unshown_warnings(session: Session) -> list[str]:
    """Crossings recorded but not shown yet (cheap: reads no costs); each is shown once."""
    return await _unshown(await session.ledger())


async def limit_statuses(session: Session) -> list[LimitStatus]:
    """Every limit against this month's spend."""
    return await costs.limit_statuses(await session.ledger())


async def estimate_script(
    session: Session, script: Path, runs: int, parallel: int, timeout_s: int | None = None
) -> Estimate:
    """What `runs` runs of a script would cost; reads the ledger only, starts nothing."""
    if not script.is_file():
        raise UserInputError(f"script not found: {script}", "check the path")
    if runs < 1 or parallel < 1:
        raise UserInputError("runs and --parallel must be at least 1", "e.g. --files 50")
    settings = session.settings
    return await costs.estimate_runs(
        await session.ledger(),
        settings,
        sha256_file(script),
        runs,
        parallel,
        timeout_s or settings.timeout_s,
    )


async def enforce_budget(
    session: Session,
    script: Path,
    budget_microns: int,
    runs: int = 1,
    parallel: int = 1,
    timeout_s: int | None = None,
) -> Estimate:
    """Raise BudgetExceededError when the estimate is above the budget."""
    found = await estimate_script(session, script, runs, parallel, timeout_s)
    refusal = admission.budget_refusal(found, budget_microns, str(script))
    if refusal is not None:
        raise refusal
    return found


async def set_limit(
    session: Session, amount: str, project: str | None, alert_at: int, webhook: str | None
) -> SpendingLimit | None:
    """Set a monthly limit from text such as `€50/month`; 0 removes it (None returned)."""
    money = parse_money(amount)
    if not 1 <= alert_at <= 100:
        raise UserInputError(f"--alert-at {alert_at} is not a percentage", "give 1 to 100")
    if webhook is not None and urlsplit(webhook).scheme not in ("http", "https"):
        raise UserInputError(f"bad webhook URL {webhook!r}", "give an http(s):// URL")
    scope = project or ALL_PROJECTS
    ledger = await session.ledger()
    if money.amount_microns == 0:  # as the original RGrid: 0 disables the limit
        await ledger.remove_limit(scope)
        return None
    # A limit is monthly: a bare amount (`50`) meant €50 a month in the original too.
    limit = SpendingLimit(
        project=scope,
        amount_microns=money.amount_microns,
        alert_at_percent=alert_at,
        webhook=webhook,
    )
    await ledger.set_limit(limit)
    return limit


async def drop_limit(session: Session, project: str | None) -> bool:
    """Remove a limit; False if there was none."""
    return await (await session.ledger()).remove_limit(project or ALL_PROJECTS)


async def before_run(
    session: Session,
    script: Path,
    budget: str | None = None,
    runs: int = 1,
    parallel: int = 1,
    timeout_s: int | None = None,
) -> list[str]:
    """The checks before anything is uploaded or started: spending limits (refuse at
    100 %), then --budget against the estimate. Returns warning lines to show."""
    lines = await check_limits(session, session.settings.project)
    if budget is not None:
        amount = parse_money(budget).amount_microns
        await enforce_budget(session, script, amount, runs, parallel, timeout_s)
    return lines


async def _unshown(ledger: Ledger) -> list[str]:
    return [f"warning: {alert_text(alert)}" for alert in await ledger.take_unshown_alerts()]


# What a limit and its crossings say to the user.


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
    refusal = admission.limit_refusal(found, what)
    if refusal is not None:
        raise refusal
