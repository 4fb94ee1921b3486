"""What crosses the boundary to a node's activities: leases, staging, runs, outputs.

Every field added later needs a default, so histories recorded by running workflows
still decode (STYLE.md rule 1).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from rgrid.models.execution import ExecutionSpec, FileRef, OutputFile


class NodeLease(BaseModel):
    """A slot held on one node for one execution attempt."""

    lease_id: str
    node_id: str
    queue: str
    expires_at: datetime
    hourly_price_microns: int = 0
    slots: int = 1
    attempt: int = 1


class ClaimNodeInput(BaseModel):
    execution_id: str
    attempt: int
    lease_ttl_s: int = 120


class StageInputsInput(BaseModel):
    lease: NodeLease
    execution_id: str
    script: FileRef
    inputs: list[FileRef] = Field(default_factory=list)


class StageInputsResult(BaseModel):
    files: int
    bytes: int


class RunContainerInput(BaseModel):
    lease: NodeLease
    execution_id: str
    spec: ExecutionSpec


class RunResult(BaseModel):
    exit_code: int | None
    timed_out: bool = False
    started_at: datetime
    finished_at: datetime
    runtime: str = "process"
    stderr_tail: str = ""

    @property
    def duration_s(self) -> float:
        """Wall-clock seconds the script ran."""
        return (self.finished_at - self.started_at).total_seconds()


class CollectOutputsInput(BaseModel):
    lease: NodeLease
    execution_id: str


class CollectOutputsResult(BaseModel):
    outputs: list[OutputFile] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)


class ExecuteResult(BaseModel):
    """One `execute` step: the script's run and the outputs collected after it."""

    run: RunResult
    outputs: CollectOutputsResult


class ReleaseNodeInput(BaseModel):
    lease: NodeLease


class Ack(BaseModel):
    """An empty answer, so every call still returns one model."""


class NodeActionInput(BaseModel):
    node_id: str


class NodeLoad(BaseModel):
    """A node agent's answer to a ping: its slots, those leased, whether it drains."""

    node_id: str
    slots: int
    in_use: int
    draining: bool = False


class AgentState(BaseModel):
    """What a running agent says about itself in `<node dir>/agent.json` (read by
    `rgrid dev status`): the runtime it offers and why that one."""

    node_id: str
    pid: int
    runtime: str  # "docker" or "process"
    reason: str
    started_at: datetime
