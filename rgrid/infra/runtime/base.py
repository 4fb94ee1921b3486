"""The Runtime Protocol: what a node needs to run a script, whatever isolates it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from rgrid.models.execution import Resources

OutputSink = Callable[[Literal["out", "err"], bytes], None]


class RunRequest(BaseModel):
    """One run of a script already staged in `work_dir`."""

    execution_id: str
    work_dir: Path
    tmp_dir: Path
    script: str
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    requirements: list[str] = Field(default_factory=list)
    timeout_s: int = 3600
    resources: Resources = Field(default_factory=Resources)
    runtime: str = "auto"  # auto | process | docker
    image: str | None = None
    default_image: str | None = None  # the spec's; None: the node's own setting
    network: bool = True
    rebuild: bool = False  # --no-cache: build the dependency layer again, fresh from the index
    batch_id: str | None = None  # a --no-cache batch rebuilds each layer once per node


class RunOutcome(BaseModel):
    """How the script ended: its exit code, or None when it was killed for its timeout."""

    exit_code: int | None
    timed_out: bool = False
    out_of_memory: bool = False  # killed at its --memory bound (the whole run's)
    runtime: str = ""  # which runtime ran it


class Runtime(Protocol):
    """Runs a script; cancelling `run` kills it and everything it started."""

    name: str

    @property
    def isolation(self) -> str:
        """What the runtime isolates, in words, for the node's log and status."""
        ...

    async def run(self, request: RunRequest, sink: OutputSink) -> RunOutcome: ...

    async def close(self) -> None:
        """Let go of what the runtime keeps between runs (the agent is stopping)."""
        ...
