"""What the embedded stack's supervisor records about its children (`dev/children.json`):
read by `rgrid dev status`, and by the next `rgrid dev start` to end orphans of a
supervisor that was killed."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from rgrid.models.node import AgentState


class ChildState(StrEnum):
    RUNNING = "running"
    BACKOFF = "restarting"  # exited; started again after a backoff
    GAVE_UP = "gave-up"  # exited too often: the restart budget is spent
    STOPPED = "stopped"


class ProcessRef(BaseModel):
    """A process as recorded: its pid and kernel start time, so a reused pid is not it."""

    pid: int
    start_ticks: int


class ChildStatus(BaseModel):
    """One supervised child: what runs now and how its last life ended."""

    name: str  # temporal, control, agent-local-1, command-server
    kind: str  # temporal | control | agent | command-server
    state: ChildState = ChildState.RUNNING
    process: ProcessRef | None = None
    started_at: float | None = None  # epoch seconds of the current life
    ready: bool = False  # answers its probe (Temporal, health port, agent polling)
    restarts: int = 0
    last_exit_code: int | None = None
    last_exit_reason: str | None = None  # the last line it wrote before it exited
    log: str
    agent: AgentState | None = None  # for agents: the runtime they offer and why


class SupervisorState(BaseModel):
    supervisor: ProcessRef
    started_at: float
    children: list[ChildStatus] = Field(default_factory=list)
