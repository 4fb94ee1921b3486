"""Money as integer microns, and a node's bill split across the executions that used it.

1 EUR = 1,000,000 microns. Every amount is an int and no float ever enters cost arithmetic:
text is parsed with Decimal, instants become integer milliseconds once (`_ms_between`), and
display rounds only at the edge (`format_microns`).

A node bills `hourly_price_microns` for every started hour from creation to deletion. Each
billed hour is split across the executions that ran in it by slot-milliseconds; the unused
capacity of the hour is the node's idle overhead. Remainders of the integer division go by
largest remainder, so executions + idle == bill holds to the micron.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, Inexact, localcontext
from typing import Annotated, Literal, Self

from pydantic import BaseModel, Field, model_validator

from rgrid.errors import UserInputError

MICRONS_PER_EUR = 1_000_000

HOUR = timedelta(hours=1)
MS_PER_HOUR = 3_600_000
_ONE_MS = timedelta(milliseconds=1)

# Money fields refuse floats and numeric strings outright instead of coercing them.
Microns = Annotated[int, Field(strict=True, ge=0)]

Period = Literal["month", "total"]

_HINT = (
    "write euros as 50, €50, EUR 50, 50 EUR or €2.50 (at most 6 decimals); "
    "add /month or /mo for a monthly limit, e.g. €50/month"
)

# Only ASCII digits: `\d` would also accept e.g. Arabic-Indic digits.
_MONEY = re.compile(
    r"""
    (?:(?P<symbol>€)\s*|(?P<prefix>[A-Za-z]{3})\s*)?
    (?P<number>[0-9]+(?:\.[0-9]+)?|\.[0-9]+)
    (?:\s*(?P<suffix>[A-Za-z]{3}))?
    (?:\s*/\s*(?P<period>[A-Za-z]+))?
    """,
    re.VERBOSE,
)

# A minus sign before the number, with or without a currency on either side of it.
_NEGATIVE = re.compile(r"(?:€|[A-Za-z]{3})?\s*-\s*(?:€|[A-Za-z]{3})?\s*[0-9.]")

_PERIODS: dict[str, Period] = {"month": "month", "mo": "month"}


class MoneyLimit(BaseModel):
    """A spending limit: an amount of microns per month or in total."""

    amount_microns: Microns
    period: Period = "total"


class NodeBill(BaseModel):
    """One node's billing facts; `deleted_at` is None while the node still runs."""

    node_id: str
    created_at: datetime
    deleted_at: datetime | None = None
    hourly_price_microns: Microns
    slots: Annotated[int, Field(strict=True, ge=1)]

    @model_validator(mode="after")
    def _deleted_after_created(self) -> Self:
        if self.deleted_at is not None and self.deleted_at < self.created_at:
            raise ValueError("deleted_at is before created_at")
        return self


class SlotUsage(BaseModel):
    """One execution occupying one slot on a node between two instants."""

    execution_id: str
    node_id: str
    started_at: datetime
    finished_at: datetime

    @model_validator(mode="after")
    def _finished_after_started(self) -> Self:
        if self.finished_at < self.started_at:
            raise ValueError("finished_at is before started_at")
        return self


class Allocation(BaseModel):
    """Who pays what: sum(per_execution) + sum(idle_per_node) == sum(bill_per_node)."""

    per_execution: dict[str, int] = Field(default_factory=dict)
    idle_per_node: dict[str, int] = Field(default_factory=dict)
    bill_per_node: dict[str, int] = Field(default_factory=dict)
    # Shares that can still change: they touch a billing hour that is open at `now`.
    provisional_executions: set[str] = Field(default_factory=set)


def format_microns(amount: int, currency: str = "EUR") -> str:
    """Microns for humans, exact: 1234 -> €0.001234, 2_500_000 -> €2.50, 0 -> €0.00."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"amounts are integer microns, not {type(amount).__name__}")
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), MICRONS_PER_EUR)
    digits = f"{fraction:06d}".rstrip("0").ljust(2, "0")
    code = currency.upper()
    unit = "€" if code == "EUR" else f"{code} "
    return f"{sign}{unit}{whole}.{digits}"


def parse_money(text: str) -> MoneyLimit:
    """Parse a euro limit such as `50`, `EUR 50`, `€2.50` or `€50/month` into microns."""
    cleaned = text.strip()
    if not cleaned:
        raise UserInputError("no amount of money given", _HINT)
    for char in cleaned:
        if char != "€" and unicodedata.category(char) == "Sc":
            raise UserInputError(f"only EUR is supported, not {char!r}", _HINT)
    match = _MONEY.fullmatch(cleaned)
    if match is None:
        if _NEGATIVE.match(cleaned) and _MONEY.fullmatch(cleaned.replace("-", "", 1)):
            raise UserInputError(f"a money limit cannot be negative: {text!r}", _HINT)
        raise UserInputError(f"not an amount of money: {text!r}", _HINT)

    codes = [code.upper() for code in (match["prefix"], match["suffix"]) if code]
    for code in codes:
        if code != "EUR":
            raise UserInputError(f"only EUR is supported, not {code}", _HINT)
    if len(codes) + bool(match["symbol"]) > 1:
        raise UserInputError(f"give the currency once: {text!r}", _HINT)

    period: Period = "total"
    if match["period"]:
        found = _PERIODS.get(match["period"].lower())
        if found is None:
            raise UserInputError(f"unknown period {match['period']!r} in {text!r}", _HINT)
        period = found

    number = match["number"]
    # Decimal(str) is exact; the precision below fits every digit, and Inexact traps in case.
    with localcontext() as context:
        context.prec = len(number) + 8
        context.traps[Inexact] = True
        scaled = Decimal(number) * MICRONS_PER_EUR
    if scaled != scaled.to_integral_value():
        raise UserInputError(f"{text!r} is finer than a micro-euro (at most 6 decimals)", _HINT)
    return MoneyLimit(amount_microns=int(scaled), period=period)


def started_billing_hours(created_at: datetime, deleted_at: datetime) -> int:
    """Hours billed for a node's life: every started hour counts, and at least one."""
    lifetime = deleted_at - created_at
    if lifetime < timedelta(0):
        raise ValueError("deleted_at is before created_at")
    # Ceiling division on timedelta: exact integer arithmetic on microseconds.
    return max(1, -(-lifetime // HOUR))


def amortize(nodes: list[NodeBill], usages: list[SlotUsage], now: datetime) -> Allocation:
    """Split each node's billed hours across the executions that ran in them; the rest is idle."""
    allocation = Allocation(per_execution={usage.execution_id: 0 for usage in usages})
    for hour in split_hours(nodes, usages, now):
        for execution_id, share in hour.shares.items():
            allocation.per_execution[execution_id] += share
        allocation.idle_per_node[hour.node_id] = (
            allocation.idle_per_node.get(hour.node_id, 0) + hour.idle
        )
        allocation.bill_per_node[hour.node_id] = (
            allocation.bill_per_node.get(hour.node_id, 0) + hour.price
        )
        if hour.open:
            allocation.provisional_executions.update(hour.shares)
    return allocation


@dataclass(frozen=True, slots=True)
class HourSplit:
    """One billed hour of one node: its price, split into shares and idle (they sum to it).

    `open` hours can still change; an execution listed in an open hour (even with a zero
    share) has a provisional cost."""

    node_id: str
    hour_start: datetime
    price: int
    shares: dict[str, int]
    idle: int
    open: bool


def split_hours(nodes: list[NodeBill], usages: list[SlotUsage], now: datetime) -> list[HourSplit]:
    """Every billed hour of every node, split by slot-milliseconds; hours in node order."""
    by_node: dict[str, list[SlotUsage]] = {}
    for node in nodes:
        if node.node_id in by_node:
            raise ValueError(f"node {node.node_id!r} is listed twice")
        by_node[node.node_id] = []
    for usage in usages:
        if usage.node_id not in by_node:
            raise ValueError(
                f"execution {usage.execution_id!r} ran on unknown node {usage.node_id!r}"
            )
        by_node[usage.node_id].append(usage)
    hours: list[HourSplit] = []
    for node in nodes:
        hours.extend(_split_node(node, by_node[node.node_id], now))
    return hours


def _ms_between(start: datetime, end: datetime) -> int:
    # The one place time enters cost math: timedelta holds integer microseconds (a float of
    # seconds already became one when its datetime was built), and floor division by 1 ms
    # keeps it integer. Flooring every instant the same way keeps adjacent runs adjacent.
    return (end - start) // _ONE_MS


def _split_node(node: NodeBill, usages: list[SlotUsage], now: datetime) -> list[HourSplit]:
    end = node.deleted_at if node.deleted_at is not None else max(now, node.created_at)
    hours = started_billing_hours(node.created_at, end)
    lifetime_ms = _ms_between(node.created_at, end)
    price = node.hourly_price_microns

    # Only the last hour of a running node can still be open; a deleted node's bill is final.
    last_hour_start = node.created_at + (hours - 1) * HOUR
    last_hour_open = node.deleted_at is None and last_hour_start + HOUR > now

    used: defaultdict[int, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
    touching_open: set[str] = set()
    for usage in usages:
        start = min(max(_ms_between(node.created_at, usage.started_at), 0), lifetime_ms)
        stop = min(max(_ms_between(node.created_at, usage.finished_at), start), lifetime_ms)
        for hour in range(start // MS_PER_HOUR, -(-stop // MS_PER_HOUR)):
            overlap = min(stop, (hour + 1) * MS_PER_HOUR) - max(start, hour * MS_PER_HOUR)
            if overlap > 0:
                used[hour][usage.execution_id] += overlap
        # Touching the open hour: running into it, or a zero-length record inside it. A run
        # that ended exactly as the hour began is final.
        touches = usage.finished_at > last_hour_start or usage.started_at >= last_hour_start
        if last_hour_open and touches and usage.started_at <= end:
            touching_open.add(usage.execution_id)

    splits: list[HourSplit] = []
    for hour in range(hours):
        is_open = last_hour_open and hour == hours - 1
        slot_ms = used.get(hour)
        if slot_ms:
            shares, idle = _split_hour(price, slot_ms, node.slots * MS_PER_HOUR)
        else:  # an hour nobody used is idle in full
            shares, idle = {}, price
        if is_open:
            for execution_id in touching_open:
                shares.setdefault(execution_id, 0)
        splits.append(
            HourSplit(
                node_id=node.node_id,
                hour_start=node.created_at + hour * HOUR,
                price=price,
                shares=shares,
                idle=idle,
                open=is_open,
            )
        )
    return splits


def _split_hour(
    price: int, slot_ms: dict[str, int], capacity_ms: int
) -> tuple[dict[str, int], int]:
    # Overlapping records (clock skew at a lease hand-over) can fill an hour past its
    # capacity; such an hour has no idle part and is split among its executions alone.
    idle_ms = max(capacity_ms - sum(slot_ms.values()), 0)
    # The order of this list is the tie-break: execution ids ascending, idle last.
    parties = [*sorted(slot_ms.items()), ("", idle_ms)]
    total_ms = sum(weight for _, weight in parties)
    quotients: list[int] = []
    remainders: list[int] = []
    for _, weight in parties:
        quotient, remainder = divmod(price * weight, total_ms)
        quotients.append(quotient)
        remainders.append(remainder)
    # Largest remainder: the microns lost to flooring (fewer than there are parties with a
    # remainder) go one each to the largest remainders, so the hour sums to its price.
    leftover = price - sum(quotients)
    for index in sorted(range(len(parties)), key=lambda i: (-remainders[i], i))[:leftover]:
        quotients[index] += 1
    shares = {execution_id: quotients[i] for i, (execution_id, _) in enumerate(parties[:-1])}
    return shares, quotients[-1]
