"""Whether new work may start: a used-up spending limit or an estimate above the run's
budget refuses it. Pure: the statuses and the estimate are handed in. The control plane
decides with these (activities/admission.py) for every entry point; the CLI asks the
same functions first, so a refusal comes before anything is uploaded.
"""

from __future__ import annotations

from rgrid.errors import BudgetExceededError, LimitExceededError
from rgrid.models.money import ALL_PROJECTS, SpendingLimit
from rgrid.money.estimate import Estimate
from rgrid.money.limits import LimitStatus
from rgrid.money.pricing import format_microns


def describe(limit: SpendingLimit) -> str:
    """A limit for humans: `€50.00/month for project geo`."""
    scope = "for all projects" if limit.project == ALL_PROJECTS else f"for project {limit.project}"
    return f"{format_microns(limit.amount_microns)}/{limit.period} {scope}"


def limit_refusal(found: list[LimitStatus], what: str = "new runs") -> LimitExceededError | None:
    """The refusal when a limit that binds this work is used up (spend >= limit), else None.
    Below 100 % work goes on, past the warning threshold too."""
    for status in found:
        if status.exceeded:
            limit = status.limit
            option = "" if limit.project == ALL_PROJECTS else f" --project {limit.project}"
            return LimitExceededError(
                f"{what} refused: the spending limit {describe(limit)} is used up "
                f"({format_microns(status.spent_microns)} spent this month)",
                f'raise it with `rgrid cost set-limit "€…/month"{option}` or drop it with '
                f"`rgrid cost remove-limit{option}`; running work goes on",
            )
    return None


def budget_refusal(
    estimate: Estimate, budget_microns: int, script: str
) -> BudgetExceededError | None:
    """The refusal when the estimate is above the budget (equal is within it), else None."""
    if estimate.expected_microns <= budget_microns:
        return None
    return BudgetExceededError(
        f"not started: the estimate {format_microns(estimate.expected_microns)} for "
        f"{estimate.runs} run(s) is above the budget {format_microns(budget_microns)}",
        f"see `rgrid estimate {script}` for how it was derived, or raise --budget",
    )
