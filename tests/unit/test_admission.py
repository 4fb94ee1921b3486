"""The admission rule on both sides of each boundary: a limit refuses from exactly 100 % on
(its warning threshold only warns), a budget lets an estimate equal to it through."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rgrid.errors import BudgetExceededError, LimitExceededError
from rgrid.models.money import SpendingLimit
from rgrid.money.admission import budget_refusal, limit_refusal
from rgrid.money.estimate import NodeClassPrice, build_estimate
from rgrid.money.limits import LimitStatus, crossings

LIMIT = 1_000_000


def status(spent: int, project: str = "geo") -> LimitStatus:
    limit = SpendingLimit(project=project, amount_microns=LIMIT, alert_at_percent=80)
    return LimitStatus(
        limit=limit, spent_microns=spent, period_start=datetime(2026, 12, 1, tzinfo=UTC)
    )


@pytest.mark.parametrize(
    ("spent", "warned", "refused"),
    [
        (0, [], False),
        (799_999, [], False),  # one micron short of the warning
        (800_000, [80], False),  # at the warning threshold: warned, let through
        (999_999, [80], False),  # one micron short of the limit
        (1_000_000, [80, 100], True),  # exactly the limit: refused
        (5_000_000, [80, 100], True),
    ],
)
def test_a_limit_warns_from_its_threshold_and_refuses_from_exactly_100_percent(
    spent: int, warned: list[int], refused: bool
) -> None:
    found = [status(spent)]
    assert [a.threshold_percent for a in crossings(found)] == warned
    refusal = limit_refusal(found, "retries")
    assert (refusal is not None) is refused
    if refusal is not None:
        assert isinstance(refusal, LimitExceededError)
        assert refusal.message.startswith("retries refused: the spending limit €1.00/month")


def test_no_limit_refuses_nothing() -> None:
    assert limit_refusal([]) is None


def test_a_budget_equal_to_the_estimate_is_enough_and_one_micron_less_is_not() -> None:
    estimate = build_estimate(
        "a" * 64,
        2,
        1,
        NodeClassPrice(node_class="local", hourly_price_microns=3_600_000, slots=1, source="t"),
        [],
        60,
    )
    assert estimate.expected_microns == 120_000  # two runs of their whole 60 s timeout
    assert budget_refusal(estimate, 120_000, "job.py") is None
    refusal = budget_refusal(estimate, 119_999, "job.py")
    assert isinstance(refusal, BudgetExceededError)
    assert "estimate €0.12 for 2 run(s) is above the budget €0.119999" in refusal.message
