from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from rgrid.errors import UserInputError
from rgrid.money.pricing import (
    MICRONS_PER_EUR,
    Allocation,
    MoneyLimit,
    NodeBill,
    SlotUsage,
    amortize,
    format_microns,
    parse_money,
    started_billing_hours,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
FAST = settings(max_examples=150, deadline=None)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def node(
    node_id: str = "n1",
    price: int = 6000,
    slots: int = 1,
    created: float = 0,
    deleted: float | None = 60,
) -> NodeBill:
    return NodeBill(
        node_id=node_id,
        created_at=at(created),
        deleted_at=None if deleted is None else at(deleted),
        hourly_price_microns=price,
        slots=slots,
    )


def run(execution_id: str, start: float, end: float, node_id: str = "n1") -> SlotUsage:
    return SlotUsage(
        execution_id=execution_id, node_id=node_id, started_at=at(start), finished_at=at(end)
    )


def assert_reconciles(allocation: Allocation) -> None:
    assert sum(allocation.per_execution.values()) + sum(allocation.idle_per_node.values()) == sum(
        allocation.bill_per_node.values()
    )
    assert all(share >= 0 for share in allocation.per_execution.values())
    assert all(idle >= 0 for idle in allocation.idle_per_node.values())


# --- format_microns ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (0, "EUR", "€0.00"),
        (1, "EUR", "€0.000001"),
        (1234, "EUR", "€0.001234"),
        (1200, "EUR", "€0.0012"),
        (10_000, "EUR", "€0.01"),
        (100_000, "EUR", "€0.10"),
        (1_000_000, "EUR", "€1.00"),
        (2_500_000, "EUR", "€2.50"),
        (2_500_001, "EUR", "€2.500001"),
        (123_456_789_000, "EUR", "€123456.789"),
        (-1, "EUR", "-€0.000001"),
        (-500_000, "EUR", "-€0.50"),
        (-2_501_000, "EUR", "-€2.501"),
        (1_500_000, "eur", "€1.50"),
        (1_500_000, "USD", "USD 1.50"),
        (1234, "USD", "USD 0.001234"),
        (-1_500_000, "USD", "-USD 1.50"),
    ],
)
def test_format_microns_is_exact_and_trims_only_beyond_cents(
    amount: int, currency: str, expected: str
) -> None:
    assert format_microns(amount, currency) == expected


@pytest.mark.parametrize("amount", [1.5, 0.0, True])
def test_format_microns_refuses_anything_but_an_int(amount: object) -> None:
    with pytest.raises(TypeError):
        format_microns(amount)  # type: ignore[arg-type]


@FAST
@given(st.integers(min_value=0, max_value=10**15))
def test_formatted_amounts_parse_back_to_the_same_microns(amount: int) -> None:
    assert parse_money(format_microns(amount)) == MoneyLimit(amount_microns=amount, period="total")


# --- parse_money ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "microns", "period"),
    [
        ("50", 50_000_000, "total"),
        ("€50", 50_000_000, "total"),
        ("EUR 50", 50_000_000, "total"),
        ("50 EUR", 50_000_000, "total"),
        ("€50/month", 50_000_000, "month"),
        ("€2.50", 2_500_000, "total"),
        ("0.000001", 1, "total"),
        ("50/mo", 50_000_000, "month"),
        ("eur50", 50_000_000, "total"),
        ("50eur", 50_000_000, "total"),
        ("€ 50", 50_000_000, "total"),
        ("  €50 / Month  ", 50_000_000, "month"),
        ("EUR 2.5/MO", 2_500_000, "month"),
        ("50 EUR/month", 50_000_000, "month"),
        ("0", 0, "total"),
        (".5", 500_000, "total"),
        ("007", 7_000_000, "total"),
        ("2.5000000", 2_500_000, "total"),  # exact, so the trailing zeros do no harm
        ("123456789012345678901234567890.123456", 123456789012345678901234567890123456, "total"),
    ],
)
def test_parse_money_accepts_euro_amounts_with_an_optional_period(
    text: str, microns: int, period: str
) -> None:
    assert parse_money(text) == MoneyLimit(amount_microns=microns, period=period)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no amount"),
        ("   ", "no amount"),
        ("-50", "negative"),
        ("-0", "negative"),
        ("€-50", "negative"),
        ("-€50", "negative"),
        ("EUR -2.50", "negative"),
        ("-50/month", "negative"),
        ("0.0000001", "6 decimals"),
        ("1.2345678", "6 decimals"),
        ("€0.0000015/month", "6 decimals"),
        ("$50", "only EUR"),
        ("£5", "only EUR"),
        ("¥500", "only EUR"),
        ("USD 50", "only EUR"),
        ("50 usd", "only EUR"),
        ("50 GBP/month", "only EUR"),
        ("€50 EUR", "currency once"),
        ("EUR 50 EUR", "currency once"),
        ("50/week", "unknown period"),
        ("50/year", "unknown period"),
        ("50/total", "unknown period"),
        ("abc", "not an amount"),
        ("fifty", "not an amount"),
        ("€", "not an amount"),
        ("EUR", "not an amount"),
        ("/month", "not an amount"),
        ("€€50", "not an amount"),
        ("1,000", "not an amount"),
        ("2,50", "not an amount"),
        ("1_000", "not an amount"),
        ("1e3", "not an amount"),
        ("NaN", "not an amount"),
        ("inf", "not an amount"),
        ("+50", "not an amount"),
        ("5.", "not an amount"),
        ("1.2.3", "not an amount"),
        ("50 50", "not an amount"),
        ("50-60", "not an amount"),
        ("50 - 60", "not an amount"),
        ("--50", "not an amount"),
        ("\u0665\u0660", "not an amount"),  # Arabic-Indic digits 50: ASCII digits only
        ("50/month/month", "not an amount"),
        ("50 /", "not an amount"),
    ],
)
def test_parse_money_rejects_with_a_reason_and_a_hint_of_accepted_forms(
    text: str, reason: str
) -> None:
    with pytest.raises(UserInputError) as caught:
        parse_money(text)
    assert reason in caught.value.message
    assert "€50/month" in caught.value.hint and "6 decimals" in caught.value.hint


# --- started_billing_hours -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("lifetime", "hours"),
    [
        (timedelta(0), 1),
        (timedelta(microseconds=1), 1),
        (timedelta(seconds=3599), 1),
        (timedelta(seconds=3600), 1),
        (timedelta(seconds=3600, microseconds=1), 2),
        (timedelta(seconds=3601), 2),
        (timedelta(hours=2), 2),
        (timedelta(hours=2, seconds=1), 3),
        (timedelta(days=30), 720),
    ],
)
def test_every_started_hour_bills_and_a_zero_second_node_bills_one(
    lifetime: timedelta, hours: int
) -> None:
    assert started_billing_hours(T0, T0 + lifetime) == hours


def test_billing_hours_refuse_a_deletion_before_creation() -> None:
    with pytest.raises(ValueError):
        started_billing_hours(T0, T0 - timedelta(microseconds=1))


# --- amortize: worked examples -------------------------------------------------------------


def test_one_half_hour_run_on_a_two_slot_node_pays_a_quarter_of_the_hour() -> None:
    # 6000 microns/h, capacity 2 slots x 60 min; the run used 30 slot-minutes = 1/4.
    allocation = amortize([node(price=6000, slots=2)], [run("r", 0, 30)], at(120))
    assert allocation.per_execution == {"r": 1500}
    assert allocation.idle_per_node == {"n1": 4500}
    assert allocation.bill_per_node == {"n1": 6000}
    assert allocation.provisional_executions == set()


def test_a_node_deleted_early_bills_its_last_started_hour_in_full() -> None:
    # Lived 90 min -> 2 hours at 10000. The run took 30 min of each hour; the rest is idle,
    # including the 30 minutes after deletion that the provider bills anyway.
    allocation = amortize([node(price=10_000, deleted=90)], [run("r", 30, 90)], at(200))
    assert allocation.per_execution == {"r": 5000 + 5000}
    assert allocation.idle_per_node == {"n1": 5000 + 5000}
    assert allocation.bill_per_node == {"n1": 20_000}


def test_a_run_over_three_hours_gets_a_share_from_each() -> None:
    # 3600 microns/h = 1 micron per second on one slot; run from 0:30 to 2:30.
    allocation = amortize([node(price=3600, deleted=180)], [run("r", 30, 150)], at(180))
    assert allocation.per_execution == {"r": 1800 + 3600 + 1800}
    assert allocation.idle_per_node == {"n1": 1800 + 0 + 1800}
    assert allocation.bill_per_node == {"n1": 10_800}


def test_concurrent_runs_split_an_hour_by_slot_time() -> None:
    # 4 slots at 8000/h: a full hour (1/4), b 30 min (1/8), c 15 min twice (1/8).
    usages = [run("a", 0, 60), run("b", 10, 40), run("c", 0, 15), run("c", 45, 60)]
    allocation = amortize([node(price=8000, slots=4)], usages, at(60))
    assert allocation.per_execution == {"a": 2000, "b": 1000, "c": 1000}
    assert allocation.idle_per_node == {"n1": 4000}


def test_an_hour_with_no_work_is_all_idle() -> None:
    allocation = amortize([node(price=6000, deleted=150)], [run("r", 0, 60)], at(150))
    assert allocation.per_execution == {"r": 6000}
    assert allocation.idle_per_node == {"n1": 12_000}
    assert allocation.bill_per_node == {"n1": 18_000}


def test_a_node_without_runs_is_idle_for_its_whole_bill() -> None:
    allocation = amortize([node(price=999_983, deleted=0)], [], at(1))
    assert allocation == Allocation(
        per_execution={}, idle_per_node={"n1": 999_983}, bill_per_node={"n1": 999_983}
    )


def test_a_free_node_costs_nothing_to_anyone() -> None:
    allocation = amortize([node(price=0, slots=3)], [run("a", 0, 60), run("b", 5, 6)], at(60))
    assert allocation.per_execution == {"a": 0, "b": 0}
    assert allocation.idle_per_node == {"n1": 0}


def test_remainder_microns_go_to_ties_by_execution_id() -> None:
    # 7 microns over three equal full-hour runs: 2 each and one left over, which "a" gets.
    usages = [run("c", 0, 60), run("a", 0, 60), run("b", 0, 60)]
    allocation = amortize([node(price=7, slots=3)], usages, at(60))
    assert allocation.per_execution == {"a": 3, "b": 2, "c": 2}
    assert allocation.idle_per_node == {"n1": 0}


def test_idle_comes_last_in_a_remainder_tie() -> None:
    # 1 micron, two slots, one used all hour: run and idle each owe 1/2; the run pays it.
    allocation = amortize([node(price=1, slots=2)], [run("r", 0, 60)], at(60))
    assert (allocation.per_execution, allocation.idle_per_node) == ({"r": 1}, {"n1": 0})


def test_the_largest_remainder_beats_the_execution_id_order() -> None:
    # 10 microns: "a" used 50 min (8.33), "b" 10 min (1.67): b's larger remainder wins.
    allocation = amortize([node(price=10)], [run("a", 0, 50), run("b", 50, 60)], at(60))
    assert allocation.per_execution == {"a": 8, "b": 2}
    assert allocation.idle_per_node == {"n1": 0}


def test_idle_can_win_a_remainder() -> None:
    # 10 microns, one slot, a and b 20 min each: 3.33 each, one micron left; a gets it.
    allocation = amortize([node(price=10)], [run("a", 0, 20), run("b", 20, 40)], at(60))
    assert (allocation.per_execution, allocation.idle_per_node) == ({"a": 4, "b": 3}, {"n1": 3})
    # 11 microns, one slot, one run of 10 min: run 1.83, idle 9.17 -> the run's .83 wins.
    allocation = amortize([node(price=11)], [run("a", 0, 10)], at(60))
    assert (allocation.per_execution, allocation.idle_per_node) == ({"a": 2}, {"n1": 9})
    # 11 microns, one run of 50 min: run 9.17, idle 1.83 -> idle's .83 wins.
    allocation = amortize([node(price=11)], [run("a", 0, 50)], at(60))
    assert (allocation.per_execution, allocation.idle_per_node) == ({"a": 9}, {"n1": 2})


def test_an_overfilled_hour_is_split_among_its_runs_with_no_idle() -> None:
    # One slot, two full-hour records (clock skew at a hand-over): nothing is idle.
    allocation = amortize([node(price=6000)], [run("a", 0, 60), run("b", 0, 60)], at(60))
    assert allocation.per_execution == {"a": 3000, "b": 3000}
    assert allocation.idle_per_node == {"n1": 0}


def test_usage_outside_the_node_lifetime_is_clipped_to_it() -> None:
    # Node lived 0:10 to 0:40; the record claims -1:00 to 2:00. Only 30 min count.
    nodes = [node(price=3600, created=10, deleted=40)]
    allocation = amortize(nodes, [run("r", -60, 120), run("late", 45, 50)], at(200))
    assert allocation.per_execution == {"r": 1800, "late": 0}
    assert allocation.idle_per_node == {"n1": 1800}


def test_an_execution_on_several_nodes_sums_its_shares() -> None:
    nodes = [node("n1", price=6000), node("n2", price=1200, slots=2)]
    usages = [run("r", 0, 30, "n1"), run("r", 0, 60, "n2"), run("s", 0, 60, "n2")]
    allocation = amortize(nodes, usages, at(60))
    assert allocation.per_execution == {"r": 3000 + 600, "s": 600}
    assert allocation.idle_per_node == {"n1": 3000, "n2": 0}
    assert allocation.bill_per_node == {"n1": 6000, "n2": 1200}


def test_a_zero_length_run_is_listed_and_pays_nothing() -> None:
    allocation = amortize([node()], [run("r", 10, 10)], at(60))
    assert allocation.per_execution == {"r": 0}
    assert allocation.idle_per_node == {"n1": 6000}


def test_a_running_node_bills_up_to_now_and_its_open_hour_is_provisional() -> None:
    # Created at 0:00, still up at 1:30: hours 0 and 1 billed, hour 1 still open.
    nodes = [node(price=6000, deleted=None)]
    usages = [run("closed", 0, 60), run("open", 60, 90), run("both", 50, 70)]
    allocation = amortize(nodes, usages, at(90))
    assert allocation.bill_per_node == {"n1": 12_000}
    assert allocation.provisional_executions == {"open", "both"}
    # Work recorded past `now` is clipped to now.
    later = amortize(nodes, [run("open", 60, 500)], at(90))
    assert later.per_execution == {"open": 3000}
    assert later.idle_per_node == {"n1": 9000}
    assert_reconciles(allocation)


def test_a_running_node_exactly_at_an_hour_boundary_has_no_open_hour() -> None:
    allocation = amortize([node(deleted=None)], [run("r", 0, 60)], at(60))
    assert allocation.bill_per_node == {"n1": 6000}
    assert allocation.provisional_executions == set()
    usages = [run("r", 0, 60), run("s", 60, 60)]
    just_after = amortize([node(deleted=None)], usages, at(60) + timedelta(seconds=1))
    assert just_after.bill_per_node == {"n1": 12_000}
    # r ended as the open hour began, so its share is final; s (zero-length) lies inside it.
    assert just_after.provisional_executions == {"s"}


def test_a_node_created_after_now_bills_its_first_hour_as_open() -> None:
    allocation = amortize([node(created=10, deleted=None)], [], at(0))
    assert allocation.bill_per_node == {"n1": 6000}
    assert allocation.idle_per_node == {"n1": 6000}


def test_a_deleted_node_is_never_provisional() -> None:
    allocation = amortize([node(deleted=30)], [run("r", 0, 30)], at(30))
    assert allocation.provisional_executions == set()


def test_shares_split_to_the_millisecond() -> None:
    # 3_600_000 microns/h is 1 micron per ms.
    usage = SlotUsage(
        execution_id="r",
        node_id="n1",
        started_at=T0 + timedelta(milliseconds=1),
        finished_at=T0 + timedelta(milliseconds=1235),
    )
    allocation = amortize([node(price=3_600_000)], [usage], at(60))
    assert allocation.per_execution == {"r": 1234}


def test_amortize_refuses_unknown_and_duplicate_nodes() -> None:
    with pytest.raises(ValueError, match="unknown node"):
        amortize([node("n1")], [run("r", 0, 1, "n2")], at(60))
    with pytest.raises(ValueError, match="twice"):
        amortize([node("n1"), node("n1")], [], at(60))


@pytest.mark.parametrize(
    "build",
    [
        lambda: node(created=10, deleted=5),
        lambda: node(slots=0),
        lambda: node(price=-1),
        lambda: node(price=6000.0),  # type: ignore[arg-type]
        lambda: run("r", 10, 5),
        lambda: MoneyLimit(amount_microns=-1),
        lambda: MoneyLimit(amount_microns=1, period="week"),  # type: ignore[arg-type]
    ],
)
def test_models_refuse_impossible_billing_facts(build: object) -> None:
    with pytest.raises(ValidationError):
        build()  # type: ignore[operator]


# --- amortize: properties over random fleets -----------------------------------------------

PRICES = st.one_of(
    st.sampled_from([0, 1, 2, 3, 7, 6000, 999_983, 1_000_003, 9_999_991, 10 * MICRONS_PER_EUR]),
    st.integers(min_value=0, max_value=10 * MICRONS_PER_EUR),
)


@st.composite
def fleets(
    draw: st.DrawFn, millisecond_times: bool = False
) -> tuple[list[NodeBill], list[SlotUsage], datetime]:
    unit = 1000 if millisecond_times else 1  # timedelta(microseconds=...) granularity

    def instant(low_s: int, high_s: int) -> timedelta:
        return timedelta(
            microseconds=draw(st.integers(low_s * 1_000_000 // unit, high_s * 1_000_000 // unit))
            * unit
        )

    nodes: list[NodeBill] = []
    for index in range(draw(st.integers(1, 4))):
        created = T0 + instant(0, 6 * 3600)
        # Exactly 0 s and exactly 1 h are the billing edges; draw them often.
        lifetime = draw(st.sampled_from([timedelta(0), HOUR, None])) or instant(0, 4 * 3600)
        live = draw(st.booleans())
        nodes.append(
            NodeBill(
                node_id=f"n{index}",
                created_at=created,
                deleted_at=None if live else created + lifetime,
                hourly_price_microns=draw(PRICES),
                slots=draw(st.integers(1, 8)),
            )
        )
    usages: list[SlotUsage] = []
    for _ in range(draw(st.integers(0, 12))):
        host = draw(st.sampled_from(nodes))
        start = host.created_at + instant(-1800, 5 * 3600)
        usages.append(
            SlotUsage(
                execution_id=draw(st.sampled_from("abcdefgh")),
                node_id=host.node_id,
                started_at=start,
                finished_at=start + instant(0, 3 * 3600),
            )
        )
    now = T0 + instant(0, 12 * 3600)
    return nodes, usages, now


@FAST
@given(fleets())
def test_executions_plus_idle_equal_the_bill_to_the_micron(
    fleet: tuple[list[NodeBill], list[SlotUsage], datetime],
) -> None:
    nodes, usages, now = fleet
    allocation = amortize(nodes, usages, now)
    assert_reconciles(allocation)
    assert set(allocation.per_execution) == {usage.execution_id for usage in usages}
    assert allocation.provisional_executions <= set(allocation.per_execution)
    for each in nodes:
        end = each.deleted_at or max(now, each.created_at)
        hours = started_billing_hours(each.created_at, end)
        assert allocation.bill_per_node[each.node_id] == each.hourly_price_microns * hours
        assert 0 <= allocation.idle_per_node[each.node_id] <= allocation.bill_per_node[each.node_id]


@FAST
@given(fleets(), st.randoms(use_true_random=False))
def test_the_split_does_not_depend_on_input_order(
    fleet: tuple[list[NodeBill], list[SlotUsage], datetime], shuffler: random.Random
) -> None:
    nodes, usages, now = fleet
    shuffled_nodes, shuffled_usages = nodes[:], usages[:]
    shuffler.shuffle(shuffled_nodes)
    shuffler.shuffle(shuffled_usages)
    assert amortize(shuffled_nodes, shuffled_usages, now) == amortize(nodes, usages, now)


@FAST
@given(fleets())
def test_only_running_nodes_make_shares_provisional(
    fleet: tuple[list[NodeBill], list[SlotUsage], datetime],
) -> None:
    nodes, usages, now = fleet
    final = [
        each.model_copy(update={"deleted_at": each.deleted_at or max(now, each.created_at)})
        for each in nodes
    ]
    assert amortize(final, usages, now).provisional_executions == set()


def exact_shares(
    nodes: list[NodeBill], usages: list[SlotUsage], now: datetime
) -> tuple[dict[str, Fraction], dict[str, int]]:
    """Reference: each execution's unrounded share, and how many node-hours it touched."""
    shares: dict[str, Fraction] = defaultdict(Fraction)
    touched: dict[str, int] = defaultdict(int)
    for each in nodes:
        end = each.deleted_at or max(now, each.created_at)
        for hour in range(started_billing_hours(each.created_at, end)):
            lo = each.created_at + hour * HOUR
            hi = min(lo + HOUR, end)
            used: dict[str, Fraction] = defaultdict(Fraction)
            for usage in usages:
                if usage.node_id == each.node_id:
                    overlap = min(usage.finished_at, hi) - max(usage.started_at, lo)
                    if overlap > timedelta(0):
                        used[usage.execution_id] += overlap // timedelta(microseconds=1)
            capacity = Fraction(each.slots * HOUR // timedelta(microseconds=1))
            total = max(capacity, sum(used.values(), Fraction(0)))
            for execution_id, amount in used.items():
                shares[execution_id] += each.hourly_price_microns * amount / total
                touched[execution_id] += 1
    return shares, touched


@FAST
@given(fleets(millisecond_times=True))
def test_each_share_is_within_a_micron_per_hour_of_the_exact_proportion(
    fleet: tuple[list[NodeBill], list[SlotUsage], datetime],
) -> None:
    nodes, usages, now = fleet
    allocation = amortize(nodes, usages, now)
    shares, touched = exact_shares(nodes, usages, now)
    for execution_id, share in allocation.per_execution.items():
        assert abs(share - shares[execution_id]) < max(touched[execution_id], 1)


# --- a simulated fleet ---------------------------------------------------------------------


def seconds(value: float) -> timedelta:
    # Durations arrive as float seconds; they become whole milliseconds once, here, so the
    # exact reference below and amortize's millisecond arithmetic see the same instants.
    return timedelta(milliseconds=round(value * 1000))


def simulate_fleet(seed: int, runs: int) -> tuple[list[NodeBill], list[SlotUsage], datetime]:
    rng = random.Random(seed)
    prices = [0, 5_950, 6_000, 9_983, 14_280, 71_993, 1_000_003, 10 * MICRONS_PER_EUR]
    nodes = [
        NodeBill(
            node_id=f"node-{index:02d}",
            created_at=T0 + seconds(rng.uniform(0, 4 * 3600)),
            deleted_at=None,
            hourly_price_microns=rng.choice(prices),
            slots=rng.randint(1, 8),
        )
        for index in range(25)
    ]
    # Each slot runs its executions back to back with gaps, as a scheduler would.
    free_at = {
        (each.node_id, slot): each.created_at for each in nodes for slot in range(each.slots)
    }
    usages: list[SlotUsage] = []
    for number in range(runs):
        node_id, slot = rng.choice(sorted(free_at))
        started = free_at[(node_id, slot)] + seconds(rng.expovariate(1 / 300))
        finished = started + seconds(rng.choice([0.0, 0.4, 1.0]) + rng.uniform(0, 2400))
        free_at[(node_id, slot)] = finished
        usages.append(
            SlotUsage(
                execution_id=f"exec-{number:04d}",
                node_id=node_id,
                started_at=started,
                finished_at=finished,
            )
        )
    last = max(usage.finished_at for usage in usages)
    now = last + timedelta(minutes=20)
    for index, each in enumerate(nodes):
        if index % 5:  # one node in five is still running at `now`
            busy_until = max(
                (u.finished_at for u in usages if u.node_id == each.node_id),
                default=each.created_at,
            )
            each.deleted_at = busy_until + seconds(rng.uniform(0, 1800))
    return nodes, usages, now


def test_a_thousand_runs_on_a_simulated_fleet_reconcile_per_node_and_overall() -> None:
    nodes, usages, now = simulate_fleet(seed=20250101, runs=1000)
    allocation = amortize(nodes, usages, now)

    assert len(allocation.per_execution) == 1000
    assert_reconciles(allocation)
    node_of = {usage.execution_id: usage.node_id for usage in usages}
    per_node: dict[str, int] = defaultdict(int)
    for execution_id, share in allocation.per_execution.items():
        per_node[node_of[execution_id]] += share
    for each in nodes:
        assert (
            per_node[each.node_id] + allocation.idle_per_node[each.node_id]
            == allocation.bill_per_node[each.node_id]
        )

    # Only executions on the running nodes' open last hour are provisional.
    live = {each.node_id for each in nodes if each.deleted_at is None}
    assert allocation.provisional_executions
    assert {node_of[e] for e in allocation.provisional_executions} <= live

    # No slot is ever double-booked here, so each share is its exact proportion, rounded.
    shares, touched = exact_shares(nodes, usages, now)
    for execution_id, share in allocation.per_execution.items():
        assert abs(share - shares[execution_id]) < max(touched[execution_id], 1)
