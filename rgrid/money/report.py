"""What a cost report says: per execution, per node, per group, and the totals that
reconcile (executions + idle == bill, to the micron)."""

from __future__ import annotations

import json
from datetime import datetime

from pydantic import BaseModel, Field

from rgrid.models.money import RunRecord

POOL = "(pool)"  # idle no batch caused


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


def entry_of(row: RunRecord, node_id: str) -> ExecutionCost:
    """A run's line in a report, its cost not counted yet."""
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


def unpriced(row: RunRecord) -> ExecutionCost:
    """The line of a run served from the cache: it ran on no node."""
    return entry_of(row, "").model_copy(update={"node_id": None})
