"""Pydantic models that cross workflow, activity and CLI boundaries.

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


class NodeState(StrEnum):
    """Where a node is in its life; a deleted node bills no more."""

    PROVISIONING = "provisioning"
    READY = "ready"
    DRAINING = "draining"
    DEAD = "dead"
    DELETED = "deleted"


class NodeRecord(BaseModel):
    """A node as the ledger knows it: what it costs and when it lived (its bill is the
    hourly price times its started billing hours, from created_at to deleted_at)."""

    node_id: str
    provider: str = "local"
    node_class: str = "local"
    server_type: str = ""
    location: str = ""
    server_id: int | None = None  # the provider's id (Hetzner server id)
    slots: int = 1
    hourly_price_microns: int = 0
    currency: str = "EUR"
    state: NodeState = NodeState.PROVISIONING
    created_at: datetime
    ready_at: datetime | None = None
    deleted_at: datetime | None = None
    caused_by: str | None = None  # the batch (or execution) whose demand created it


class ExecutionSpec(BaseModel):
    """Everything a node needs to run one script once."""

    script: FileRef
    args: list[str] = Field(default_factory=list)
    inputs: list[FileRef] = Field(default_factory=list)
    runtime: str = "auto"
    image: str | None = None
    network: bool = True
    requirements: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: int = 3600
    resources: Resources = Field(default_factory=Resources)
    tags: dict[str, str] = Field(default_factory=dict)
    project: str = "default"
    node_class: str = "local"
    retries: int = 0
    max_node_attempts: int = 3
    queue_timeout_s: int = 3600
    heartbeat_timeout_s: int = 30
    batch_id: str | None = None
    batch_item: int | None = None
    cacheable: bool = True  # False: the script says `# rgrid: no-cache` (side effects)
    no_cache: bool = False  # --no-cache: skip the lookup, rebuild layers, refresh the entry
    pool_id: str | None = None  # the NodePoolWorkflow to wake while waiting for a slot


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


class OutputFile(BaseModel):
    """A file the script produced, stored under the execution's output prefix."""

    path: str
    size: int
    sha256: str


class CollectOutputsResult(BaseModel):
    outputs: list[OutputFile] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)


class ReleaseNodeInput(BaseModel):
    lease: NodeLease


class Ack(BaseModel):
    """An empty answer, so every call still returns one model."""


class PlanInput(BaseModel):
    execution_id: str
    spec: ExecutionSpec


class CacheHit(BaseModel):
    """A live cache entry: the successful execution whose outputs answer a cache key."""

    key: str
    execution_id: str
    script: str = ""
    outputs: list[OutputFile] = Field(default_factory=list)
    size_bytes: int = 0
    created_at: datetime
    hits: int = 0


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


class RecordInput(BaseModel):
    status: ExecutionStatus


class AddTagsInput(BaseModel):
    tags: dict[str, str]


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
    started_at: datetime | None = None
    state: BatchState | None = None  # only in the result: what a later retry resumes from


class SetParallelInput(BaseModel):
    parallel: int


class RetryFailedInput(BaseModel):
    pass


class RetryFailedResult(BaseModel):
    requeued: int


class LoadItemsInput(BaseModel):
    manifest_key: str
    indices: list[int]


class LoadItemsResult(BaseModel):
    items: list[BatchItem]


class LimitAlert(BaseModel):
    """A spending limit crossed a threshold: the AlertWorkflow's input (one per crossing)."""

    key: str  # names the limit, its period and the threshold; the workflow id derives from it
    project: str  # "*": the limit on everything
    threshold_percent: int
    spent_microns: int
    limit_microns: int
    period: str = "month"
    period_start: datetime
    currency: str = "EUR"
    webhook: str | None = None


class WebhookInput(BaseModel):
    url: str
    payload: dict[str, object] = Field(default_factory=dict)


# --- Node pools (NodePoolWorkflow and its activities) ---


class ServerChoice(BaseModel):
    """One server type in one location: a pool tries its choices in order."""

    server_type: str = "cx22"
    location: str = "nbg1"


class NodeClassConfig(BaseModel):
    """How a pool's nodes are made and when they are retired (defaults: the original
    RGrid's: cx22 in nbg1, 2 slots, at most 10, dead after 120 s, retired 5 min before
    their next billing hour, never older than 24 h)."""

    provider: str = "hetzner"
    node_class: str = "default"
    choices: list[ServerChoice] = Field(default_factory=lambda: [ServerChoice()])
    image: str = "ubuntu-24.04"
    slots: int = 2
    max_nodes: int = 10
    ssh_key: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    tick_s: int = 30  # how often the pool looks without being asked
    boot_tick_s: int = 2  # ... and while a node boots, so it is ready as soon as it polls
    heartbeat_s: int = 30  # how often the pool pings each node
    dead_after_s: int = 120  # silence after which the API is asked whether the node lives
    retire_margin_s: int = 300  # idle nodes go when this little remains of a billed hour
    max_age_s: int = 86_400
    boot_timeout_s: int = 900  # a node not polling by then is deleted
    billing_period_s: int = 3600
    max_history: int = 5000  # events before the pool continues as new (if not suggested sooner)


class PoolNode(BaseModel):
    """A node as its pool tracks it."""

    node_id: str
    server_id: int | None = None
    server_type: str = ""
    location: str = ""
    slots: int = 1
    hourly_price_microns: int = 0
    currency: str = "EUR"
    state: NodeState = NodeState.PROVISIONING
    created_at: datetime
    ready_at: datetime | None = None
    last_seen: datetime | None = None  # last answered ping
    in_use: int = 0
    caused_by: str | None = None

    def record(self, provider: str, node_class: str) -> NodeRecord:
        """The node's ledger row."""
        return NodeRecord(
            node_id=self.node_id,
            provider=provider,
            node_class=node_class,
            server_type=self.server_type,
            location=self.location,
            server_id=self.server_id,
            slots=self.slots,
            hourly_price_microns=self.hourly_price_microns,
            currency=self.currency,
            state=self.state,
            created_at=self.created_at,
            ready_at=self.ready_at,
            caused_by=self.caused_by,
        )


class PoolState(BaseModel):
    """What a pool carries across continue-as-new."""

    nodes: dict[str, PoolNode] = Field(default_factory=dict)
    waiting: dict[str, str] = Field(default_factory=dict)  # execution id -> caused_by
    drain: list[str] = Field(default_factory=list)  # node ids asked to drain
    destroy: list[str] = Field(default_factory=list)  # node ids asked to be destroyed
    last_error: str | None = None
    counter: int = 0  # nodes created so far: part of new node ids
    last_backlog: int = 0  # the previous look's backlog


class PoolInput(BaseModel):
    config: NodeClassConfig
    state: PoolState | None = None


class Demand(BaseModel):
    """An execution waits for a slot of the pool's class."""

    execution_id: str
    caused_by: str | None = None


class DemandInput(BaseModel):
    pool_id: str
    demand: Demand
    node_class: str | None = None  # the execution's; None: the control plane's own


class NodeActionInput(BaseModel):
    node_id: str


class PoolStatus(BaseModel):
    """The pool's `status` query: its nodes and its last provisioning error."""

    pool_id: str
    config: NodeClassConfig
    nodes: list[PoolNode] = Field(default_factory=list)
    waiting: int = 0
    last_error: str | None = None


class ServerInfo(BaseModel):
    """A server as the provider's API reports it."""

    server_id: int
    name: str
    status: str  # initializing, starting, running, off, deleting, ...
    server_type: str = ""
    location: str = ""
    created_at: datetime
    labels: dict[str, str] = Field(default_factory=dict)
    hourly_price_microns: int = 0
    currency: str = "EUR"


class ObservePoolInput(BaseModel):
    node_class: str
    node_ids: list[str] = Field(default_factory=list)
    list_servers: bool = True  # False: spare the provider's API rate limit this time


class PoolObservation(BaseModel):
    """One look at the world: the shared queue's backlog, which nodes poll, the servers."""

    backlog: int = 0
    polling: list[str] = Field(default_factory=list)  # node ids with pollers on their queue
    servers: list[ServerInfo] = Field(default_factory=list)  # every server with our labels
    servers_listed: bool = True


class ProvisionNodeInput(BaseModel):
    config: NodeClassConfig
    node_id: str
    choice: ServerChoice
    caused_by: str | None = None


class DestroyNodeInput(BaseModel):
    record: NodeRecord
    reason: str = ""
    dead: bool = False  # recorded dead first, then deleted


class SaveNodeInput(BaseModel):
    record: NodeRecord


class NodeLoad(BaseModel):
    """A node agent's answer to a ping: its slots, those leased, whether it drains."""

    node_id: str
    slots: int
    in_use: int
    draining: bool = False


class NoCapacity(BaseModel):
    """The pool could not make a node: the waiting execution fails with this message."""

    message: str
