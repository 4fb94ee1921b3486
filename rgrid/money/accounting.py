"""Cost accounting from the ledger: node rows and execution rows in, amortized costs out.

Nothing is stored: every figure is computed on read from the rows, through
`pricing.split_hours`, so a report, `rgrid status` and the cost an execution records at its
end all come from one formula. A window selects billed hours by their start; within any
window Σ executions + Σ idle == Σ bills, to the micron. A figure is provisional while one
of its hours is still open (its node runs and the hour has not ended) and final after.

Node rows and executions meet by node id. A node id that lives several lives (a local
agent `local-1` across stack restarts) keeps one row per life, `local-1@<life>`; an
execution on `local-1` belongs to the life that spans its start.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NamedTuple

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement
from sqlalchemy import select as sa_select
from sqlmodel import col

from rgrid.errors import NotFoundError
from rgrid.infra.ledger.db import ExecutionRow, Ledger, as_utc
from rgrid.models.execution import Phase
from rgrid.models.pool import NodeRecord
from rgrid.money.pricing import HOUR, HourSplit, NodeBill, SlotUsage, split_hours

LIFE_SEPARATOR = "@"
POOL = "(pool)"  # idle no batch caused


class RunRow(NamedTuple):
    """The columns of an execution row that accounting reads (times in UTC)."""

    id: str
    phase: str
    node_id: str | None
    started_at: datetime | None
    finished_at: datetime | None
    cached: bool
    project: str
    batch_id: str | None
    script: str
    tags_json: str
    created_at: datetime | None


async def load_runs(ledger: Ledger, *conditions: ColumnElement[bool]) -> list[RunRow]:
    """Execution rows matching the conditions, as plain tuples (a month's rows load fast)."""
    table = ExecutionRow.__table__  # type: ignore[attr-defined]
    query = sa_select(*(table.c[name] for name in RunRow._fields)).where(*conditions)
    async with ledger.engine.connect() as conn:
        result = await conn.execute(query)
        rows = result.all()
    return [
        RunRow._make(as_utc(value) if isinstance(value, datetime) else value for value in row)
        for row in rows
    ]


class ExecutionCost(BaseModel):
    """One execution's amortized cost in a window, and what it is made of."""

    execution_id: str
    cost_microns: int = 0
    provisional: bool = False
    node_id: str | None = None
    node_hours: int = 0  # billed hours of its node it ran in
    idle_context_microns: int = 0  # idle of those hours, weighted by its share; not billed to it
    project: str = "default"
    batch_id: str | None = None
    script: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    cached: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None


class NodeCost(BaseModel):
    """One node's bill in a window, and its idle part."""

    node_id: str
    provider: str = "local"
    node_class: str = "local"
    currency: str = "EUR"
    hourly_price_microns: int = 0
    slots: int = 1
    hours: int = 0
    open_hours: int = 0
    bill_microns: int = 0
    idle_microns: int = 0
    caused_by: str | None = None


class GroupCost(BaseModel):
    """A row of `rgrid cost --by …`: what executions in it cost, and idle assigned to it."""

    key: str
    executions: int = 0
    executions_microns: int = 0
    idle_microns: int = 0


class CostReport(BaseModel):
    """Costs of the billed hours that start in [since, until); they reconcile exactly."""

    since: datetime | None
    until: datetime
    now: datetime
    project: str | None = None
    currency: str = "EUR"
    executions: list[ExecutionCost] = Field(default_factory=list)
    nodes: list[NodeCost] = Field(default_factory=list)
    executions_microns: int = 0
    idle_microns: int = 0
    bill_microns: int = 0
    provisional: bool = False  # some hour in the window is still open
    idle_by_batch: dict[str, int] = Field(default_factory=dict)  # caused_by -> idle
    by_day: list[GroupCost] = Field(default_factory=list)


def base_node_id(row_id: str) -> str:
    """The agent's node id of a ledger row id (`local-1@01J…` -> `local-1`)."""
    return row_id.split(LIFE_SEPARATOR, 1)[0]


def node_bill(node: NodeRecord) -> NodeBill:
    """The billing facts of a node row."""
    return NodeBill(
        node_id=node.node_id,
        created_at=node.created_at,
        deleted_at=node.deleted_at,
        hourly_price_microns=node.hourly_price_microns,
        slots=max(node.slots, 1),
    )


def usage_of(row: RunRow | None, now: datetime) -> tuple[datetime, datetime] | None:
    """When an execution held its slot: from start to finish (to now while it runs)."""
    if row is None or row.cached or row.node_id is None or row.started_at is None:
        return None
    started = row.started_at
    if row.finished_at is not None:
        return started, max(row.finished_at, started)
    if Phase(row.phase).terminal:
        return None  # ended without a finish time: nothing to charge
    return started, max(now, started)


class Lives:
    """Finds the node row an execution ran on: the row with its node id, or else the life
    of that id that began last before the execution started."""

    def __init__(self, nodes: list[NodeRecord]) -> None:
        self._exact = {node.node_id for node in nodes}
        self._lives: dict[str, list[tuple[datetime, str]]] = {}
        for node in nodes:
            self._lives.setdefault(base_node_id(node.node_id), []).append(
                (node.created_at, node.node_id)
            )
        for lives in self._lives.values():
            lives.sort()

    def of(self, execution_node: str, started: datetime) -> str | None:
        """The row id, or None when the ledger has no such node."""
        if execution_node in self._exact:
            return execution_node
        lives = self._lives.get(execution_node, [])
        index = bisect_right(lives, started, key=lambda life: life[0])
        return lives[index - 1][1] if index else None


def life_of(execution_node: str, started: datetime, nodes: list[NodeRecord]) -> str | None:
    """The node row an execution ran on (see Lives)."""
    return Lives(nodes).of(execution_node, started)


async def executions_on(
    ledger: Ledger, node_ids: set[str], start: datetime, end: datetime
) -> list[RunRow]:
    """Execution rows on these nodes (by agent id) whose slot time may touch [start, end)."""
    if not node_ids:
        return []
    rows = await load_runs(
        ledger,
        col(ExecutionRow.node_id).in_(sorted({base_node_id(n) for n in node_ids})),
        col(ExecutionRow.started_at) < end,
        col(ExecutionRow.finished_at).is_(None) | (col(ExecutionRow.finished_at) >= start),
    )
    # Again in Python: SQLite compares the stored text, which is exact only for UTC values.
    return [
        row
        for row in rows
        if row.started_at is not None
        and row.started_at < end
        and (row.finished_at is None or row.finished_at >= start)
    ]


def _lifetime_overlaps(
    node: NodeRecord, start: datetime | None, end: datetime, now: datetime
) -> bool:
    last = node.deleted_at or max(now, node.created_at)
    # Its last billed hour may reach up to an hour past its end.
    return node.created_at < end and (start is None or last + HOUR > start)


def _usages(
    rows: list[RunRow], nodes: list[NodeRecord], now: datetime
) -> tuple[list[SlotUsage], dict[str, RunRow]]:
    usages: list[SlotUsage] = []
    by_id: dict[str, RunRow] = {}
    lives = Lives(nodes)
    for row in rows:
        span = usage_of(row, now)
        if span is None or row.node_id is None:
            continue
        life = lives.of(row.node_id, span[0])
        if life is None:
            continue  # a node the ledger never recorded: nothing to split
        # Built unvalidated: usage_of already guarantees finished_at >= started_at.
        usages.append(
            SlotUsage.model_construct(
                execution_id=row.id, node_id=life, started_at=span[0], finished_at=span[1]
            )
        )
        by_id[row.id] = row
    return usages, by_id


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
    # No end given: every hour billed so far (a node's clock may even run ahead of ours).
    until = until or max([now, *(n.created_at for n in every)]) + HOUR
    nodes = [n for n in every if _lifetime_overlaps(n, since, until, now)]
    floor = (since or datetime.min.replace(tzinfo=UTC) + HOUR) - HOUR
    rows = await executions_on(ledger, {n.node_id for n in nodes}, floor, until + HOUR)
    # Lives are told apart among all rows: one outside the window may be the run's own.
    usages, by_id = _usages(rows, every, now)
    inside = {n.node_id for n in nodes}
    usages = [u for u in usages if u.node_id in inside]
    hours = [
        h
        for h in split_hours([node_bill(n) for n in nodes], usages, now)
        if (since is None or h.hour_start >= since) and h.hour_start < until
    ]
    report = _aggregate(hours, nodes, by_id, since, until, now)
    report.executions.extend(await _cached_between(ledger, since, until))
    if not project:
        return report
    part = restrict(report, project)
    causes = causes_of(report, project)
    cause_of = {n.node_id: n.caused_by for n in nodes}
    part.by_day = _days(
        hours,
        lambda execution_id: by_id[execution_id].project == project,
        lambda node_id: cause_of.get(node_id) in causes,
    )
    return part


def _aggregate(
    hours: list[HourSplit],
    nodes: list[NodeRecord],
    rows: dict[str, RunRow],
    since: datetime | None,
    until: datetime,
    now: datetime,
) -> CostReport:
    # Sums in plain ints first: models are built once at the end (a month has ~10^4 hours).
    node_sums: dict[str, list[int]] = {
        n.node_id: [0, 0, 0, 0] for n in nodes
    }  # h, open, bill, idle
    run_sums: dict[str, list[int]] = {}  # cost, hours, open, idle context
    run_node: dict[str, str] = {}
    for hour in hours:
        sums = node_sums[hour.node_id]
        sums[0] += 1
        sums[1] += hour.open
        sums[2] += hour.price
        sums[3] += hour.idle
        used = sum(hour.shares.values())
        for execution_id, share in hour.shares.items():
            run = run_sums.get(execution_id)
            if run is None:
                run = run_sums[execution_id] = [0, 0, 0, 0]
                run_node[execution_id] = hour.node_id
            run[0] += share
            run[1] += 1
            run[2] |= hour.open
            if used:
                run[3] += hour.idle * share // used
    report = CostReport(since=since, until=until, now=now)
    for execution_id in sorted(run_sums):
        cost, node_hours, is_open, context = run_sums[execution_id]
        entry = _execution_cost(rows[execution_id], run_node[execution_id])
        entry.cost_microns, entry.node_hours = cost, node_hours
        entry.provisional, entry.idle_context_microns = bool(is_open), context
        report.executions.append(entry)
    for n in nodes:
        count, open_hours, bill, idle = node_sums[n.node_id]
        if count:
            report.nodes.append(
                NodeCost(
                    node_id=n.node_id,
                    provider=n.provider,
                    node_class=n.node_class,
                    currency=n.currency,
                    hourly_price_microns=n.hourly_price_microns,
                    slots=n.slots,
                    caused_by=n.caused_by,
                    hours=count,
                    open_hours=open_hours,
                    bill_microns=bill,
                    idle_microns=idle,
                )
            )
    report.executions_microns = sum(c[0] for c in run_sums.values())
    report.idle_microns = sum(n.idle_microns for n in report.nodes)
    report.bill_microns = sum(n.bill_microns for n in report.nodes)
    report.provisional = any(h.open for h in hours)
    currencies = {n.currency for n in report.nodes}
    report.currency = currencies.pop() if len(currencies) == 1 else "EUR"
    for node in report.nodes:
        key = node.caused_by or POOL
        report.idle_by_batch[key] = report.idle_by_batch.get(key, 0) + node.idle_microns
    report.by_day = _days(hours, lambda _: True, lambda _: True)
    return report


def _execution_cost(row: RunRow, node_id: str) -> ExecutionCost:
    return ExecutionCost(
        execution_id=row.id,
        node_id=node_id,
        project=row.project,
        batch_id=row.batch_id,
        script=row.script,
        tags=json.loads(row.tags_json) if row.tags_json != "{}" else {},
        cached=row.cached,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


async def _cached_between(
    ledger: Ledger, since: datetime | None, until: datetime
) -> list[ExecutionCost]:
    # Served from the cache: listed (they count as runs) at no cost.
    conditions: list[ColumnElement[bool]] = [
        col(ExecutionRow.cached).is_(True),
        col(ExecutionRow.created_at) < until,
    ]
    if since is not None:
        conditions.append(col(ExecutionRow.created_at) >= since)
    found = []
    for row in await load_runs(ledger, *conditions):
        created = row.created_at
        if created is None or created >= until or (since is not None and created < since):
            continue
        found.append(_execution_cost(row, "").model_copy(update={"node_id": None}))
    return found


def _days(
    hours: list[HourSplit], counts: Callable[[str], bool], idles: Callable[[str], bool]
) -> list[GroupCost]:
    """Per day of the hours' starts (UTC): the shares of executions `counts` keeps and the
    idle of the nodes `idles` keeps."""
    days: dict[str, GroupCost] = {}
    seen: set[tuple[str, str]] = set()
    for hour in hours:
        key = hour.hour_start.date().isoformat()
        day = days.setdefault(key, GroupCost(key=key))
        if idles(hour.node_id):
            day.idle_microns += hour.idle
        for execution_id, share in hour.shares.items():
            if not counts(execution_id):
                continue
            day.executions_microns += share
            if (key, execution_id) not in seen:
                seen.add((key, execution_id))
                day.executions += 1
    return [days[key] for key in sorted(days)]


def causes_of(report: CostReport, project: str) -> set[str]:
    """What a project's demand may have caused a node for: its batches and executions."""
    mine = [c for c in report.executions if c.project == project]
    return {c.batch_id for c in mine if c.batch_id} | {c.execution_id for c in mine}


def restrict(report: CostReport, project: str) -> CostReport:
    """A project's part: its executions, and the idle of nodes its batches caused (its
    `by_day` is left to cost_report, which has the hours)."""
    causes = causes_of(report, project)
    executions = [c for c in report.executions if c.project == project]
    idle = {k: v for k, v in report.idle_by_batch.items() if k in causes}
    part = report.model_copy(
        update={
            "project": project,
            "executions": executions,
            "nodes": [n for n in report.nodes if n.caused_by in causes],
            "idle_by_batch": idle,
            "executions_microns": sum(c.cost_microns for c in executions),
            "idle_microns": sum(idle.values()),
            "provisional": any(c.provisional for c in executions),
            "by_day": [],
        }
    )
    # A project's bill is its share of the fleet's: its runs and the idle it caused.
    part.bill_microns = part.executions_microns + part.idle_microns
    return part


def group_by(report: CostReport, by: str) -> list[GroupCost]:
    """Rows that sum to the report's totals: executions by day, project, tag set, batch or
    script; idle with the batch (or its project) that caused its node, else the pool."""
    if by == "day":
        return report.by_day
    groups: dict[str, GroupCost] = {}

    def row(key: str) -> GroupCost:
        return groups.setdefault(key, GroupCost(key=key))

    project_of_cause: dict[str, str] = {}
    for cost in report.executions:
        key = _group_key(cost, by)
        entry = row(key)
        entry.executions += 1
        entry.executions_microns += cost.cost_microns
        if cost.batch_id:
            project_of_cause[cost.batch_id] = cost.project
        project_of_cause[cost.execution_id] = cost.project
    for cause, idle in report.idle_by_batch.items():
        if by == "batch" and cause != POOL:
            row(cause).idle_microns += idle
        elif by == "project" and cause in project_of_cause:
            row(project_of_cause[cause]).idle_microns += idle
        elif idle:
            row(POOL).idle_microns += idle
    return sorted(groups.values(), key=lambda g: (g.key == POOL, g.key))


def _group_key(cost: ExecutionCost, by: str) -> str:
    if by == "project":
        return cost.project
    if by == "batch":
        return cost.batch_id or "(single runs)"
    if by == "script":
        return cost.script or "-"
    if by == "tag":  # the whole tag set: each execution in exactly one row
        return ",".join(f"{k}={v}" for k, v in sorted(cost.tags.items())) or "(untagged)"
    raise ValueError(f"cannot group by {by!r}")


async def execution_cost(
    ledger: Ledger,
    execution_id: str,
    now: datetime | None = None,
    usage: SlotUsage | None = None,
    fallback: NodeBill | None = None,
) -> ExecutionCost:
    """One execution's amortized cost now, provisional or final.

    `usage` replaces what the ledger says (the execution's end is not recorded yet when
    it prices itself); `fallback` stands in for a node the ledger has no row for."""
    now = now or datetime.now(UTC)
    # Pricing itself at its end, an execution brings its own usage: its row is not needed.
    found = [] if usage else await load_runs(ledger, col(ExecutionRow.id) == execution_id)
    row = found[0] if found else None
    if row is None and usage is None:
        raise NotFoundError(f"no execution {execution_id!r}", "see `rgrid list`")
    if row is not None and row.cached:
        return _execution_cost(row, "").model_copy(update={"node_id": None})
    span = (usage.started_at, usage.finished_at) if usage else usage_of(row, now)
    node_id = usage.node_id if usage else (row.node_id if row else None)
    if span is None or node_id is None:
        return _execution_cost(row, "") if row else ExecutionCost(execution_id=execution_id)
    nodes = [
        n for n in await ledger.nodes(include_deleted=True) if base_node_id(n.node_id) == node_id
    ]
    life = life_of(node_id, span[0], nodes)
    usages: list[SlotUsage] = []
    if life is not None:
        bill = node_bill(next(n for n in nodes if n.node_id == life))
        # Only the hours it ran in matter: the runs that shared them, and nothing else.
        first = bill.created_at + (span[0] - bill.created_at) // HOUR * HOUR
        last = bill.created_at + -(-(span[1] - bill.created_at) // HOUR) * HOUR
        others = await executions_on(ledger, {node_id}, first, max(last, first + HOUR))
        shared, _ = _usages([r for r in others if r.id != execution_id], nodes, now)
        usages = [u for u in shared if u.node_id == life]
    elif fallback is not None:
        bill = fallback  # a node the ledger never recorded: priced alone, as if new
    else:
        return _execution_cost(row, "") if row else ExecutionCost(execution_id=execution_id)
    mine = SlotUsage(
        execution_id=execution_id, node_id=bill.node_id, started_at=span[0], finished_at=span[1]
    )
    cost = (
        _execution_cost(row, bill.node_id)
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


def month_start(now: datetime) -> datetime:
    """The first instant of now's calendar month, UTC."""
    now = now.astimezone(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
