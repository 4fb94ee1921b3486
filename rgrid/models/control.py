"""What crosses the boundary to the control activities: plan, cost, record, items.

Every field added later needs a default, so histories recorded by running workflows
still decode (STYLE.md rule 1).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from rgrid.models.batch import BatchItem
from rgrid.models.execution import ExecutionSpec, ExecutionStatus, OutputFile, Phase
from rgrid.models.node import NodeLease


class PlanInput(BaseModel):
    execution_id: str
    spec: ExecutionSpec
    status: ExecutionStatus | None = None  # recorded first: one local activity, not two


class CacheHit(BaseModel):
    """A live cache entry: the successful execution whose outputs answer a cache key."""

    key: str
    execution_id: str
    script: str = ""
    outputs: list[OutputFile] = Field(default_factory=list)
    size_bytes: int = 0
    created_at: datetime
    hits: int = 0

    def answer(self, status: ExecutionStatus, now: datetime) -> ExecutionStatus:
        """`status` answered by this entry: succeeded at `now` with its outputs, at no
        cost and on no node. The CLI's fast path and the workflow both end a hit here."""
        return status.model_copy(
            update={
                "phase": Phase.SUCCEEDED,
                "exit_code": 0,
                "finished_at": now,
                "outputs": self.outputs,
                "cache_key": self.key,
                "cached": True,
                "cached_from": self.execution_id,
            }
        )


class PlanResult(BaseModel):
    estimate_microns: int = 0
    cache_key: str | None = None  # None: the run is not cacheable
    hit: CacheHit | None = None  # served from the cache: run nothing


class CostInput(BaseModel):
    lease: NodeLease
    slot_seconds: float
    # When the script held its slot; histories from before these fields price by seconds.
    execution_id: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None


class CostResult(BaseModel):
    cost_microns: int
    provisional: bool = True


class RecordInput(BaseModel):
    status: ExecutionStatus


class FinishInput(BaseModel):
    """A run that has ended on its node: price it, then record it with its cost."""

    status: ExecutionStatus
    cost: CostInput


class LoadItemsInput(BaseModel):
    manifest_key: str
    indices: list[int]


class LoadItemsResult(BaseModel):
    items: list[BatchItem]


class AdmitInput(BaseModel):
    """New work the control plane must let through or refuse: a run, a batch, a retry."""

    project: str
    what: str = "new runs"  # how the refusal names the work: "new runs", "retries"
    # With a budget: the estimate of `runs` runs of the script must be within it.
    budget_microns: int | None = None
    script_sha256: str = ""
    script_name: str = ""
    runs: int = 1
    parallel: int = 1
    timeout_s: int = 3600
    node_class: str = "local"


class AdmitResult(BaseModel):
    """Empty when admitted; else the refusal's Failure type name and its one line."""

    refused: str | None = None
    message: str = ""
