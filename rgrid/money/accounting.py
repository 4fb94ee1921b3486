"""Cost accounting: node records and execution records in, amortized costs out.

Pure: callers read the records from the ledger (`report_span` says which) and hand them
over. Nothing is stored: every figure is computed on read, through
`pricing.split_hours`, so a report, `rgrid status` and the cost an execution records at its
end all come from one formula. A window selects billed hours by their start; within any
window Σ executions + Σ idle == Σ bills, to the micron. A figure is provisional while one
of its hours is still open (its node runs and the hour has not ended) and final after.
Node rows and executions meet by node id, through the node's lives (lives.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import NamedTuple

from rgrid.models.money import RunRecord
from rgrid.models.pool import NodeRecord
from rgrid.money.breakdown import causes_of, restrict
from rgrid.money.lives import base_node_id, node_bill, usages_of
from rgrid.money.pricing import HOUR, HourSplit, split_hours
from rgrid.money.report import POOL, CostReport, GroupCost, NodeCost, entry_of, unpriced


def _lifetime_overlaps(
    node: NodeRecord, start: datetime | None, end: datetime, now: datetime
) -> bool:
    last = node.deleted_at or max(now, node.created_at)
    # Its last billed hour may reach up to an hour past its end.
    return node.created_at < end and (start is None or last + HOUR > start)


class ReportSpan(NamedTuple):
    """What a report of [since, until) reads: the nodes that may bill in it, and the runs
    on their agents whose slot time touches [runs_from, runs_until)."""

    nodes: list[NodeRecord]
    until: datetime
    agents: set[str]
    runs_from: datetime
    runs_until: datetime


def report_span(
    every: list[NodeRecord], since: datetime | None, until: datetime | None, now: datetime
) -> ReportSpan:
    """The span of a report over every node row (the ledger's, deleted ones included)."""
    # No end given: every hour billed so far, which is every hour a node's own cost counts
    # (a node's clock may run ahead of ours, its rows even recording a deletion after now).
    until = until or max([now, *(n.deleted_at or n.created_at for n in every)]) + HOUR
    nodes = [n for n in every if _lifetime_overlaps(n, since, until, now)]
    floor = (since or datetime.min.replace(tzinfo=UTC) + HOUR) - HOUR
    agents = {base_node_id(n.node_id) for n in nodes}
    return ReportSpan(nodes, until, agents, floor, until + HOUR)


def cost_report(
    every: list[NodeRecord],
    span: ReportSpan,
    runs: list[RunRecord],
    cached: list[RunRecord],
    since: datetime | None,
    now: datetime,
    project: str | None = None,
) -> CostReport:
    """Every billed hour starting in [since, span.until), split; with `project`, its part
    only. `runs` are those of the span, `cached` the runs served from cache in it."""
    nodes, until = span.nodes, span.until
    # Lives are told apart among all rows: one outside the window may be the run's own.
    usages, by_id = usages_of(runs, every, now)
    inside = {n.node_id for n in nodes}
    usages = [u for u in usages if u.node_id in inside]
    hours = [
        h
        for h in split_hours([node_bill(n) for n in nodes], usages, now)
        if (since is None or h.hour_start >= since) and h.hour_start < until
    ]
    report = _aggregate(hours, nodes, by_id, since, until, now)
    # Served from the cache: listed (they count as runs) at no cost.
    report.executions.extend(unpriced(row) for row in cached)
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
    rows: dict[str, RunRecord],
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
        entry = entry_of(rows[execution_id], run_node[execution_id])
        entry.cost_microns, entry.node_hours = cost, node_hours
        entry.provisional, entry.idle_context_microns = bool(is_open), context
        report.executions.append(entry)
    for n in nodes:
        count, open_hours, bill, idle = node_sums[n.node_id]
        if count:
            # What the node row says, as NodeCost names it, and the sums of its hours.
            facts = n.model_dump(include=set(NodeCost.model_fields))
            totals = {"open_hours": open_hours, "bill_microns": bill, "idle_microns": idle}
            report.nodes.append(NodeCost(**facts, hours=count, **totals))
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


def month_start(now: datetime) -> datetime:
    """The first instant of now's calendar month, UTC."""
    now = now.astimezone(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
