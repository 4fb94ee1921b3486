"""A small process supervisor: start children, restart any that exits (exponential
backoff, a restart budget per child), record them, and make sure none outlives us.

Children die with the supervisor three ways: a parent-death signal (the kernel kills
them if we are killed -9), their own process group (which stop() kills, taking along
whatever they started), and a record of pids and start times (`children.json`) from
which the next start ends any that still run. As a subreaper we also inherit the
orphans of a child that died (a killed agent's scripts) and end them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from rgrid.infra import processes
from rgrid.models.stack import ChildState, ChildStatus, ProcessRef, SupervisorState

log = structlog.get_logger()

RESTART_BUDGET = 5  # restarts per child within RESTART_WINDOW_S, or in a row
RESTART_WINDOW_S = 60.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
STABLE_AFTER_S = 30.0  # a child that ran this long starts its backoff from the first step
PROBE_EVERY_S = 1.0
PROBE_STARTING_S = 0.1  # while a child is not ready yet: a start is seen at once
STOP_TIMEOUT_S = 15.0


@dataclass
class ChildSpec:
    """How to run one child, and how to tell that it works."""

    name: str
    kind: str
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    # A child whose own children must outlive it (the command server's forked commands,
    # e.g. the `rgrid dev stop` that is stopping us): only the child itself is ended.
    spare_descendants: bool = False
    # Is it working? It may also note details on the status (an agent's runtime).
    probe: Callable[[ChildStatus], Awaitable[bool]] | None = None  # None: running is ready


@dataclass
class _Child:
    spec: ChildSpec
    status: ChildStatus
    proc: subprocess.Popen[bytes] | None = None
    monotonic_start: float = 0.0
    next_start: float = 0.0
    streak: int = 0  # exits in a row without a stable run
    exits: collections.deque[float] = field(default_factory=collections.deque)


class Supervisor:
    """Runs children until stopped; its state file says how each one is doing."""

    def __init__(
        self,
        specs: list[ChildSpec],
        state_path: Path,
        budget: int = RESTART_BUDGET,
        backoff_first_s: float = BACKOFF_FIRST_S,
    ) -> None:
        self._budget = budget
        self._backoff_first_s = backoff_first_s
        self._children = [
            _Child(spec, ChildStatus(name=spec.name, kind=spec.kind, log=str(spec.log)))
            for spec in specs
        ]
        self._state_path = state_path
        me = os.getpid()
        ticks = processes.start_ticks(me)
        assert ticks is not None
        self._state = SupervisorState(
            supervisor=ProcessRef(pid=me, start_ticks=ticks), started_at=time.time()
        )
        self._last_probe = 0.0
        self._spared_sessions: set[int] = set()
        # Children the host process had before us (a test runner's servers) are not ours.
        self._foreign: set[int] = set()

    def status(self) -> list[ChildStatus]:
        """Every child as it is now."""
        return [child.status for child in self._children]

    def start_all(self) -> None:
        self._foreign = set(processes.children_of(os.getpid()))
        processes.become_subreaper()
        for child in self._children:
            self._start(child)
        self._save()

    async def run(self, stop: asyncio.Event) -> None:
        """Watch children until `stop` is set: restart the exited, probe the running."""
        while not stop.is_set():
            changed = False
            for child in self._children:
                changed |= self._watch(child)
            starting = any(not c.status.ready for c in self._children if c.proc is not None)
            every = PROBE_STARTING_S if starting else PROBE_EVERY_S
            if time.monotonic() - self._last_probe >= every:
                self._last_probe = time.monotonic()
                self._reap_orphans()
                changed |= await self._probe()
            if changed:
                self._save()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.1)

    def stop_all(self) -> None:
        """SIGTERM every child's group and wait (Temporal last: the others drain against
        it); SIGKILL what is left, and whatever each started."""
        last = [c for c in self._children if c.spec.kind == "temporal"]
        first = [c for c in reversed(self._children) if c.spec.kind != "temporal"]
        for group in (first, last):
            running = [c for c in group if c.proc is not None and c.proc.poll() is None]
            for child in running:
                assert child.proc is not None
                if child.spec.spare_descendants:
                    child.proc.terminate()
                else:
                    processes.kill_group(child.proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            for child in group:
                if child.proc is None:
                    continue
                try:
                    child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("child_killed", child=child.spec.name)
                if child.spec.spare_descendants:
                    child.proc.kill()
                else:
                    processes.kill_group(child.proc.pid)
                child.proc.wait()
                child.proc = None
                child.status.state = ChildState.STOPPED
                child.status.process = None
        self._reap_orphans()
        self._state_path.unlink(missing_ok=True)

    def _start(self, child: _Child) -> None:
        spec = child.spec
        spec.log.parent.mkdir(parents=True, exist_ok=True)
        with spec.log.open("ab") as out:
            child.proc = subprocess.Popen(
                processes.dying_with_parent(spec.argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=spec.env,
                start_new_session=True,  # its own group: stop() ends all it starts
            )
        ticks = processes.start_ticks(child.proc.pid) or 0
        if spec.spare_descendants:
            self._spared_sessions.add(child.proc.pid)  # its session's id
        child.monotonic_start = time.monotonic()
        child.status.process = ProcessRef(pid=child.proc.pid, start_ticks=ticks)
        child.status.started_at = time.time()
        child.status.state = ChildState.RUNNING
        child.status.ready = False
        log.info("child_started", child=spec.name, pid=child.proc.pid, step=f"{spec.name} starting")

    def _watch(self, child: _Child) -> bool:
        now = time.monotonic()
        if child.status.state is ChildState.BACKOFF and now >= child.next_start:
            child.status.restarts += 1
            self._start(child)
            return True
        if child.proc is None or (code := child.proc.poll()) is None:
            return False
        # Anything it started (a killed agent's scripts) ends with it.
        if not child.spec.spare_descendants:
            processes.kill_group(child.proc.pid)
        self._reap_orphans()
        child.proc = None
        child.status.process = None
        child.status.ready = False
        child.status.last_exit_code = code
        child.status.last_exit_reason = last_line(child.spec.log)
        child.streak = 1 if now - child.monotonic_start >= STABLE_AFTER_S else child.streak + 1
        child.exits.append(now)
        while child.exits and now - child.exits[0] > RESTART_WINDOW_S:
            child.exits.popleft()
        # Spent: too many exits in the window, or in a row without one stable run (a
        # process that takes long to crash, on a loaded machine, never fills a window).
        if len(child.exits) > self._budget or child.streak > self._budget:
            child.status.state = ChildState.GAVE_UP
            log.error("child_gave_up", child=child.spec.name, exit_code=code)
            return True
        delay = min(self._backoff_first_s * 2 ** (child.streak - 1), BACKOFF_MAX_S)
        child.next_start = now + delay
        child.status.state = ChildState.BACKOFF
        log.warning("child_exited", child=child.spec.name, exit_code=code, restart_in_s=delay)
        return True

    async def _probe(self) -> bool:
        changed = False
        for child in self._children:
            if child.status.state is not ChildState.RUNNING:
                continue
            probe = child.spec.probe
            ready = True if probe is None else await probe(child.status)
            if ready != child.status.ready:
                child.status.ready = ready
                changed = True
                if ready:  # a step of the stack's start, shown to the user who waits on it
                    log.info("child_ready", child=child.spec.name, step=f"{child.spec.name} ready")
        return changed

    def _reap_orphans(self) -> None:
        """End and reap processes that became ours when their parent (a child) died; those
        of a spared child's session are only reaped once they exit by themselves."""
        known = self._foreign | {c.proc.pid for c in self._children if c.proc is not None}
        ended = []
        for pid in processes.children_of(os.getpid()):
            if pid in known:
                continue
            try:
                spared = os.getsid(pid) in self._spared_sessions
            except ProcessLookupError:
                spared = True  # already gone: just reap it
            if spared:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                continue
            processes.kill_group(pid)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            ended.append(pid)
        if ended:
            log.info("orphans_ended", pids=ended)

    def _save(self) -> None:
        self._state.children = self.status()
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(self._state.model_dump_json(indent=1))
        tmp.replace(self._state_path)  # readers see it whole or not at all


def last_line(path: Path, max_bytes: int = 8192) -> str | None:
    """The last non-empty line of a log: usually why a process exited."""
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - max_bytes))
            lines = [ln.strip() for ln in fh.read().decode(errors="replace").splitlines()]
    except OSError:
        return None
    lines = [ln for ln in lines if ln]
    return lines[-1][:300] if lines else None
