"""Controlling the embedded stack from a client: is it running, start it, stop it.

Kept apart from rgrid.worker.dev so a CLI command pays none of the worker's imports.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path

from pydantic import BaseModel

from rgrid import paths
from rgrid.client import stack_launch
from rgrid.config import Settings
from rgrid.errors import EmbeddedStackError
from rgrid.infra import processes
from rgrid.models.stack import SupervisorState

# Temporal and the control worker answer in seconds on an idle machine; a loaded one
# (CI, a laptop building something) can take a minute or more.
START_TIMEOUT_S = 150.0


class StackInfo(BaseModel):
    """What a running embedded stack tells the CLI about itself."""

    pid: int
    address: str
    ui_url: str
    nodes: list[str]
    started_at: float
    # False while only Temporal answers: a run can be submitted (it waits, durably, for the
    # control worker and the agents that start beside it); True once they answer too.
    ready: bool = True
    answered_at: float | None = None  # when Temporal first answered (seconds since the epoch)


def stack_file(settings: Settings) -> Path:
    """Where a running stack describes itself."""
    return paths.stack_file(settings.home)


def children_file(settings: Settings) -> Path:
    """Where the stack's supervisor records its children (pids, start times, exits)."""
    return settings.dev_dir / "children.json"


def make_private(settings: Settings) -> None:
    """rgrid's data dir and the stack's dir are the user's alone (0700), and so are the
    databases already in them (0600)."""
    for path in (settings.home, settings.dev_dir):
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)
    # New files are private by the stack's umask (SQLite gives -wal and -shm files the
    # mode of their database); these may predate it.
    for db in (settings.home / "ledger.db", settings.dev_dir / "temporal.db"):
        with contextlib.suppress(FileNotFoundError):
            db.chmod(0o600)


def read_children(settings: Settings) -> SupervisorState | None:
    """The supervisor's record of its children, or None if there is none readable."""
    try:
        return SupervisorState.model_validate_json(children_file(settings).read_text())
    except (OSError, ValueError):
        return None


def end_recorded(path: Path) -> list[str]:
    """End every process recorded in `path` that still runs (the same pid and start
    time): the supervisor first, so it restarts nothing, then each child's process
    group. The names of those ended."""
    try:
        state = SupervisorState.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return []
    refs = [("supervisor", state.supervisor)]
    refs += [(c.name, c.process) for c in state.children if c.process is not None]
    ended = []
    for name, ref in refs:
        if processes.is_same(ref.pid, ref.start_ticks):
            processes.kill_group(ref.pid)
            processes.wait_gone(partial(processes.is_same, ref.pid, ref.start_ticks), 10)
            ended.append(name)
    path.unlink(missing_ok=True)
    return ended


def port_free(ip: str, port: int) -> bool:
    """True if nothing listens on ip:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((ip, port))
        except OSError:
            return False
    return True


def check_ports(settings: Settings) -> None:
    """EmbeddedStackError naming the first port another program holds."""
    for port, var in (
        (settings.dev_port, "RGRID_DEV_PORT"),
        (settings.effective_ui_port, "RGRID_DEV_UI_PORT"),
    ):
        if not port_free(settings.dev_ip, port):
            raise EmbeddedStackError(
                f"port {port} is taken by another program",
                f"stop it, or set {var} to a free port",
            )


def read_stack(settings: Settings) -> StackInfo | None:
    """The running stack's description, if its process is alive."""
    path = stack_file(settings)
    try:
        info = StackInfo.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        path.unlink(missing_ok=True)
        return None
    return info


def start_stack(
    settings: Settings,
    quiet_wait: float = START_TIMEOUT_S + 15,
    on_step: Callable[[str, float], None] | None = None,
    workers: bool = True,
) -> StackInfo:
    """Start the stack in the background (or return the running one, or wait for the one
    starting) until it is ready, or with `workers` False until Temporal answers; `on_step`
    hears each step the stack logs while it starts, with the seconds from its start."""
    running = read_stack(settings)
    up = running is not None and (running.ready or not workers)
    if running is not None and up and stack_launch.unclaimed() is None:
        return running  # (a stack this process launched is shown starting, step by step)
    make_private(settings)
    with stack_launch.launching(settings.home):
        started = stack_launch.launched(settings.home)
        if started is None and read_stack(settings) is None:
            # A supervisor that was killed leaves nothing running (its children have a
            # parent-death signal), but what its record names and still runs is ended here.
            end_recorded(children_file(settings))
            check_ports(settings)
            started = stack_launch.launch(settings.home)
    if started is None:  # it became ready meanwhile (or runs without a launch record)
        running = read_stack(settings)
        return running if running is not None else start_stack(settings, quiet_wait, on_step)
    started.claimed = True
    began = started.began
    log_path = settings.dev_dir / "stack.log"
    offset = started.log_offset
    deadline = time.monotonic() + quiet_wait
    while time.monotonic() < deadline:
        if on_step is not None:
            offset = _report_steps(log_path, offset, lambda step, at: on_step(step, at - began))
        info = read_stack(settings)
        if info is not None and info.pid == started.pid and (info.ready or not workers):
            return info
        if not started.alive():
            raise EmbeddedStackError(
                f"the embedded stack exited while starting: {_last_error(log_path)}",
                f"see {log_path}",
            )
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(started.pid, signal.SIGTERM)
    raise EmbeddedStackError(
        f"the embedded stack did not become ready in {quiet_wait:.0f} s", f"see {log_path}"
    )


def stopped_reason(settings: Settings) -> str | None:
    """Why the embedded stack is gone for good (neither running nor starting), else None:
    a client that lost it need not wait out its retry budget."""
    if read_stack(settings) is not None or stack_launch.launched(settings.home) is not None:
        return None
    log_path = settings.dev_dir / "stack.log"
    with contextlib.suppress(OSError):
        lines = log_path.read_text(errors="replace").strip().splitlines()
        if lines and lines[-1].startswith("ERROR: "):  # it gave up, saying why
            why = lines[-1].removeprefix("ERROR: ")
            return f"the embedded stack stopped: {why} (see {log_path})"
    return "the embedded stack stopped"


def stop_stack(settings: Settings, timeout_s: float = 60.0) -> bool:
    """Stop the running stack (or end what a killed one left); False if nothing ran."""
    info = read_stack(settings)
    if info is None:
        return bool(end_recorded(children_file(settings)))
    os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(info.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.killpg(info.pid, signal.SIGKILL)
        end_recorded(children_file(settings))
    stack_file(settings).unlink(missing_ok=True)
    return True


def _report_steps(log_path: Path, offset: int, on_step: Callable[[str, float], None]) -> int:
    """Pass on the steps logged since `offset` (JSON lines with a `step`, and when it was
    logged); the offset to read from next time. A line still being written waits for its
    end."""
    with log_path.open("rb") as log_file:
        log_file.seek(offset)
        data = log_file.read()
    complete = data[: data.rfind(b"\n") + 1]
    for line in complete.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        step = event.get("step") if isinstance(event, dict) else None
        if step:
            try:
                at = datetime.fromisoformat(str(event.get("timestamp"))).timestamp()
            except ValueError:
                at = time.time()
            on_step(str(step), at)
    return offset + len(complete)


def _last_error(log_path: Path) -> str:
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("ERROR: "):
            return line.removeprefix("ERROR: ")
    return lines[-1] if lines else "no output"
