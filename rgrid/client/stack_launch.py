"""Spawning the embedded stack's supervisor. Standard library only: a newcomer's first
`rgrid run` starts the stack from the thin client, before the CLI's own imports, which
take about as long as the stack's start; both then go on side by side."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from rgrid.infra import processes
from rgrid.paths import config_file_path, stack_file


class Launch:
    """A supervisor that was started and may not be ready yet. (A plain class: the
    dataclasses module costs the thin client more than this whole module.)"""

    def __init__(
        self,
        pid: int,
        start_ticks: int,
        log_offset: int,  # where its steps begin in stack.log
        began: float,  # when it was started (seconds since the epoch)
        proc: subprocess.Popen[bytes] | None = None,  # in the process that started it
    ) -> None:
        self.pid, self.start_ticks, self.log_offset, self.proc = pid, start_ticks, log_offset, proc
        self.began = began
        self.claimed = False  # a command of this process waits for it (start_stack)

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return processes.is_same(self.pid, self.start_ticks)


_started: Launch | None = None  # the launch this process made, with its Popen


def launch_file(home: Path) -> Path:
    """Where a starting supervisor is recorded (stack.json follows once it is ready)."""
    return home / "dev" / "launch.json"


def launch(home: Path) -> Launch:
    """Start `python -m rgrid.worker.dev` detached for the stack in `home`."""
    global _started
    dev = home / "dev"
    dev.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_path = dev / "stack.log"
    with open(os.open(log_path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600), "ab") as log:
        offset = log.tell()
        began = time.time()
        proc = subprocess.Popen(
            [sys.executable, "-m", "rgrid.worker.dev"],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives the CLI that started it
            env={**os.environ, "RGRID_HOME": str(home)},
        )
    _started = Launch(proc.pid, processes.start_ticks(proc.pid) or 0, offset, began, proc)
    record = {
        "pid": proc.pid,
        "start_ticks": _started.start_ticks,
        "log_offset": offset,
        "began": began,
    }
    tmp = launch_file(home).with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(launch_file(home))
    return _started


@contextlib.contextmanager
def launching(home: Path) -> Iterator[None]:
    """Held while deciding whether to launch: two first commands at once start one stack."""
    dev = home / "dev"
    dev.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(os.open(dev / "launch.lock", os.O_CREAT | os.O_RDWR, 0o600)) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def unclaimed() -> Launch | None:
    """The launch this process made that no command of it has waited for yet: the one
    whose start a first command shows, step by step, even when it is up already."""
    return _started if _started is not None and not _started.claimed else None


def launched(home: Path) -> Launch | None:
    """The supervisor still starting for `home`, started by this process or another."""
    if _started is not None and _started.alive():
        return _started
    try:
        record = json.loads(launch_file(home).read_text())
        found = Launch(
            int(record["pid"]),
            int(record["start_ticks"]),
            int(record["log_offset"]),
            float(record.get("began", time.time())),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return found if found.alive() else None


def launch_early(argv: list[str], home: Path) -> None:
    """For a first `rgrid run` with nothing configured (no config file, no address or
    profile in the environment), start the stack now; anything else waits for the CLI."""
    configured = config_file_path().exists() or any(
        var in os.environ for var in ("RGRID_TEMPORAL_ADDRESS", "RGRID_PROFILE")
    )
    if argv[:1] != ["run"] or configured or stack_file(home).exists():
        return
    with launching(home):
        if launched(home) is None:
            launch(home)


def end_unclaimed(timeout_s: float = 30.0) -> None:
    """Stop a stack this process started early for a command that then never needed it
    (bad input, a refused budget, `--help`): such a command starts nothing."""
    global _started
    if _started is None or _started.claimed or _started.proc is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(_started.pid, signal.SIGTERM)  # it stops its children in order
    try:
        _started.proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(_started.pid, signal.SIGKILL)  # its children die with it
    _started = None
