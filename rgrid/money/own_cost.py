"""One execution's own cost, computed as a report computes it (the same hours, the same
split), from just the records it needs: its slot (`slot_of`), its node's rows, and the
runs that shared the hours it touched (`hours_touched` says which to read)."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from rgrid.models.money import RunRecord
from rgrid.models.pool import NodeRecord
from rgrid.money.lives import life_of, lives_of, node_bill, usage_of, usages_of
from rgrid.money.pricing import HOUR, NodeBill, SlotUsage, split_hours
from rgrid.money.report import ExecutionCost, entry_of, unpriced


def slot_of(
    execution_id: str, row: RunRecord | None, usage: SlotUsage | None, now: datetime
) -> SlotUsage | None:
    """When and on which agent an execution held its slot: `usage` when given (pricing
    itself at its end, its end is not recorded yet), else what its row says; None when it
    held none (served from the cache, never started)."""
    if usage is not None:
        return usage
    if row is None or row.cached or row.node_id is None:
        return None
    span = usage_of(row, now)
    if span is None:
        return None
    return SlotUsage(
        execution_id=execution_id, node_id=row.node_id, started_at=span[0], finished_at=span[1]
    )


class HoursTouched(NamedTuple):
    """The runs an execution's cost reads: those on its agent touching [start, end)."""

    agent: str
    start: datetime
    end: datetime


def hours_touched(slot: SlotUsage | None, nodes: list[NodeRecord]) -> HoursTouched | None:
    """The billed hours a slot ran in, on the node life that spans its start; None when
    the ledger has no such node, or it costs nothing (nothing else shares its cost: every
    share of a free hour is 0 whoever else ran in it)."""
    if slot is None:
        return None
    life = life_of(slot.node_id, slot.started_at, lives_of(slot.node_id, nodes))
    if life is None:
        return None
    record = next(n for n in nodes if n.node_id == life)
    if record.hourly_price_microns == 0:
        # Not read: on a free node (the embedded default) a batch's items would each read
        # every run before them in the hour, a 10,000-item batch 50 million rows.
        return None
    created = record.created_at
    # Only the hours it ran in matter: the runs that shared them, and nothing else.
    first = created + (slot.started_at - created) // HOUR * HOUR
    last = created + -(-(slot.finished_at - created) // HOUR) * HOUR
    return HoursTouched(slot.node_id, first, max(last, first + HOUR))


def execution_cost(
    execution_id: str,
    row: RunRecord | None,
    slot: SlotUsage | None,
    nodes: list[NodeRecord],
    others: list[RunRecord],
    now: datetime,
    fallback: NodeBill | None = None,
) -> ExecutionCost:
    """One execution's amortized cost now, provisional or final: its `slot` (slot_of)
    among the `others` that ran in the hours it touched (hours_touched) on its node in
    `nodes`; `fallback` stands in for a node the ledger has no row for."""
    if row is not None and row.cached:
        return unpriced(row)
    nothing = entry_of(row, "") if row else ExecutionCost(execution_id=execution_id)
    if slot is None:
        return nothing
    lives = lives_of(slot.node_id, nodes)
    life = life_of(slot.node_id, slot.started_at, lives)
    usages: list[SlotUsage] = []
    if life is not None:
        bill = node_bill(next(n for n in lives if n.node_id == life))
        shared, _ = usages_of([r for r in others if r.id != execution_id], lives, now)
        usages = [u for u in shared if u.node_id == life]
    elif fallback is not None:
        bill = fallback  # a node the ledger never recorded: priced alone, as if new
    else:
        return nothing
    mine = slot.model_copy(update={"execution_id": execution_id, "node_id": bill.node_id})
    cost = (
        entry_of(row, bill.node_id)
        if row
        else ExecutionCost(execution_id=execution_id, node_id=bill.node_id)
    )
    for hour in split_hours([bill], [*usages, mine], now):
        share = hour.shares.get(execution_id)
        if share is None:
            continue
        used = sum(hour.shares.values())
        cost.cost_microns += share
        cost.node_hours += 1
        cost.provisional |= hour.open
        if used:
            cost.idle_context_microns += hour.idle * share // used
    return cost
