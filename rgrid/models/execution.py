"""What an execution is: its spec (what to run), its files and its status.

Every field added later needs a default, so histories recorded by running workflows
still decode (STYLE.md rule 1).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class Phase(StrEnum):
    """Where an execution is in its life; the last four are terminal."""

    QUEUED = "queued"
    STAGING = "staging"
    RUNNING = "running"
    COLLECTING = "collecting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def terminal(self) -> bool:
        """True once the execution can change no more."""
        return self in TERMINAL_PHASES


TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED, Phase.TIMED_OUT})


class FileRef(BaseModel):
    """A file staged into the work dir: its relative path there and its stored content."""

    name: str
    sha256: str
    size: int
    executable: bool = False


class Resources(BaseModel):
    """Limits a run gets on its node."""

    cpus: float = 1.0
    memory_mb: int = 1024


# 3: ExecutionWorkflow's shape 2 (one execute step, and every patch before it) asked of
# the spec instead of workflow.patched.
SHAPE = 3


class ExecutionSpec(BaseModel):
    """Everything a node needs to run one script once."""

    script: FileRef
    args: list[str] = Field(default_factory=list)
    inputs: list[FileRef] = Field(default_factory=list)
    runtime: str = "auto"
    image: str | None = None  # --image: also asks for the docker runtime
    # The image a run without --image uses, resolved by the client from its settings when
    # it builds the spec, so the cache key and the node read one value; None in specs from
    # before (the node then uses its own default).
    default_image: str | None = None
    network: bool = True
    requirements: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: int = 3600
    resources: Resources = Field(default_factory=Resources)
    tags: dict[str, str] = Field(default_factory=dict)
    project: str = "default"
    # Temporal's task-queue priority of the claim: 1 most urgent .. 5; 3 by default.
    priority: int = 3
    node_class: str = "local"
    retries: int = 0
    max_node_attempts: int = 3
    queue_timeout_s: int = 3600
    heartbeat_timeout_s: int = 30
    batch_id: str | None = None
    batch_item: int | None = None
    # The batch awaits this child's result instead of an `item_done` signal, until it
    # continues as new and asks for the signal (ExecutionWorkflow.report_by_signal).
    batch_awaits_result: bool = False
    # The ExecutionWorkflow shape it was built for (SHAPE): up to it the workflow applies
    # every change without asking workflow.patched, whose marker and TemporalChangeVersion
    # upsert cost a run two history events and a visibility write. Set only by a batch for
    # its children: the batch runs on the control worker, which is as new as the one that
    # will run the child. A client may be newer than the workers: an old worker would ask
    # the patch and write its marker, which a newer worker's replay then refuses.
    shape: int | None = None
    cacheable: bool = True  # False: the script says `# rgrid: no-cache` (side effects)
    no_cache: bool = False  # --no-cache: skip the lookup, rebuild layers, refresh the entry
    pool_id: str | None = None  # the NodePoolWorkflow to wake while waiting for a slot
    # --budget: the control plane refuses the run (a batch: all its runs) when the estimate
    # is above it.
    budget_microns: int | None = None
    # Secrets by name, each sealed (rgrid.infra.codec.Keyring.seal): only a node opens them.
    secrets: dict[str, str] = Field(default_factory=dict)
    secrets_digest: str | None = None  # keyed hash of the plain values: part of the cache key


class OutputFile(BaseModel):
    """A file the script produced, stored under the execution's output prefix."""

    path: str
    size: int
    sha256: str


class ExecutionStatus(BaseModel):
    """What `rgrid status` shows; the workflow's `status` query returns it."""

    execution_id: str
    phase: Phase = Phase.QUEUED
    script: str = ""
    args: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    project: str = "default"
    batch_id: str | None = None
    batch_item: int | None = None
    node_class: str = "local"
    priority: int = 3  # its claim's priority while it waits: 1 most urgent .. 5
    node_id: str | None = None
    runtime: str | None = None
    attempts: int = 0
    exit_code: int | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cost_microns: int = 0
    error: str | None = None
    stderr_tail: str = ""
    outputs: list[OutputFile] = Field(default_factory=list)
    cache_key: str | None = None  # None: not cacheable (opted out)
    cached: bool = False  # served from the cache; ran on no node
    cached_from: str | None = None  # the execution whose outputs a cached run returns

    @property
    def duration_s(self) -> float | None:
        """Seconds the script ran, once it has started and ended."""
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class AddTagsInput(BaseModel):
    tags: dict[str, str]
