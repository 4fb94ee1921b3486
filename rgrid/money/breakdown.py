"""A cost report broken down: a project's part of it, and rows by day, project, tag set,
batch or script that sum to its totals."""

from __future__ import annotations

from rgrid.money.report import POOL, CostReport, ExecutionCost, GroupCost


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
