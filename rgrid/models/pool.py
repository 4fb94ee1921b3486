"""Nodes and node pools: records, classes, the pool's state and its provisioning calls.

Every field added later needs a default, so histories recorded by running workflows
still decode (STYLE.md rule 1).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


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


class NoCapacity(BaseModel):
    """The pool could not make a node: the waiting execution fails with this message."""

    message: str
