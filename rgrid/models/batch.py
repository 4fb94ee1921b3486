"""A batch: its spec, its durable state, its item reports, progress and steering.

Every field added later needs a default, so histories recorded by running workflows
still decode (STYLE.md rule 1).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from rgrid.models.execution import ExecutionSpec, ExecutionStatus, FileRef, Phase


class BatchItem(BaseModel):
    """One input file of a batch and the directory its outputs go to."""

    index: int
    input: FileRef
    output_dir: str


class BatchSpec(BaseModel):
    """A batch: one execution of `template` per item of the manifest, the item's file
    appended after the template's args."""

    template: ExecutionSpec
    total: int
    manifest_key: str
    parallel: int = 10
    fail_fast: bool = False
    page_size: int = 200
    patterns: list[str] = Field(default_factory=list)  # what --batch matched, for the summary


class BatchState(BaseModel):
    """What a batch carries across continue-as-new."""

    next_index: int = 0
    running: dict[int, str] = Field(default_factory=dict)  # item -> execution id
    finishing: dict[int, str] = Field(default_factory=dict)  # script ended, not reported
    retry_queue: list[int] = Field(default_factory=list)
    failed: list[int] = Field(default_factory=list)
    succeeded: int = 0
    cached: int = 0
    cost_microns: int = 0
    retries: dict[int, int] = Field(default_factory=dict)  # item -> times retried
    parallel: int = 10
    paused: bool = False
    stopped: bool = False  # fail-fast tripped: start nothing more
    started_at: datetime | None = None
    cancelled: bool = False  # the batch was cancelled (its running children with it)


class BatchInput(BaseModel):
    spec: BatchSpec
    state: BatchState | None = None


class ItemDone(BaseModel):
    """A child execution's report to its batch."""

    index: int
    execution_id: str
    phase: Phase
    exit_code: int | None = None
    cost_microns: int = 0
    cached: bool = False

    @classmethod
    def of(cls, status: ExecutionStatus) -> ItemDone:
        """The report of a batch's child that has this status."""
        if status.batch_item is None:
            raise ValueError(f"{status.execution_id} is not a batch item")
        return cls(
            index=status.batch_item,
            execution_id=status.execution_id,
            phase=status.phase,
            exit_code=status.exit_code,
            cost_microns=status.cost_microns,
            cached=status.cached,
        )


class ItemScriptDone(BaseModel):
    """A child's early report: its script has ended; outputs are being collected."""

    index: int
    execution_id: str
    failed: bool = False


class BatchProgress(BaseModel):
    """The `progress` query's answer, and the batch's result."""

    batch_id: str
    total: int
    queued: int
    running: int
    succeeded: int
    collecting: int = 0  # scripts ended, outputs still being collected
    failed: int
    cached: int = 0
    cost_microns: int = 0
    parallel: int
    paused: bool = False
    stopped: bool = False
    done: bool = False
    cancelled: bool = False
    started_at: datetime | None = None
    state: BatchState | None = None  # only in the result: what a later retry resumes from


class SetParallelInput(BaseModel):
    parallel: int


class RetryFailedInput(BaseModel):
    pass


class RetryFailedResult(BaseModel):
    requeued: int
