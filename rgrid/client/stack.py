"""Controlling the embedded stack from a client: is it running, start it, stop it.

Kept apart from rgrid.worker.dev so a CLI command pays none of the worker's imports.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from rgrid import paths
from rgrid.config import Settings
from rgrid.errors import EmbeddedStackError

START_TIMEOUT_S = 60.0


class StackInfo(BaseModel):
    """What a running embedded stack tells the CLI about itself."""

    pid: int
    address: str
    ui_url: str
    nodes: list[str]
    started_at: float


def stack_file(settings: Settings) -> Path:
    """Where a running stack describes itself."""
    return paths.stack_file(settings.home)


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
    quiet_wait: float = START_TIMEOUT_S,
    on_step: Callable[[str], None] | None = None,
) -> StackInfo:
    """Start the stack in the background (or return the running one) and wait until ready;
    `on_step` hears each step the stack logs while it starts, as it happens."""
    running = read_stack(settings)
    if running is not None:
        return running
    check_ports(settings)
    settings.dev_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.dev_dir / "stack.log"
    with log_path.open("ab") as log_file:
        offset = log_file.tell()
        proc = subprocess.Popen(
            [sys.executable, "-m", "rgrid.worker.dev"],
            stdout=log_file,
            stderr=log_file,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives the CLI that started it
            env={**os.environ, "RGRID_HOME": str(settings.home)},
        )
    deadline = time.monotonic() + quiet_wait
    while time.monotonic() < deadline:
        if on_step is not None:
            offset = _report_steps(log_path, offset, on_step)
        info = read_stack(settings)
        if info is not None and info.pid == proc.pid:
            return info
        if proc.poll() is not None:
            raise EmbeddedStackError(
                f"the embedded stack exited while starting: {_last_error(log_path)}",
                f"see {log_path}",
            )
        time.sleep(0.1)
    proc.terminate()
    raise EmbeddedStackError(
        f"the embedded stack did not become ready in {quiet_wait:.0f} s", f"see {log_path}"
    )


def stop_stack(settings: Settings, timeout_s: float = 30.0) -> bool:
    """Stop the running stack; False if none was running."""
    info = read_stack(settings)
    if info is None:
        return False
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
    stack_file(settings).unlink(missing_ok=True)
    return True


def _report_steps(log_path: Path, offset: int, on_step: Callable[[str], None]) -> int:
    """Pass on the steps logged since `offset` (JSON lines: `step`, else the event name);
    the offset to read from next time. A line still being written waits for its end."""
    with log_path.open("rb") as log_file:
        log_file.seek(offset)
        data = log_file.read()
    complete = data[: data.rfind(b"\n") + 1]
    for line in complete.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        step = event.get("step") or event.get("event") if isinstance(event, dict) else None
        if step and step != "stack_ready":  # the caller says that one itself
            on_step(str(step).replace("_", " "))
    return offset + len(complete)


def _last_error(log_path: Path) -> str:
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("ERROR: "):
            return line.removeprefix("ERROR: ")
    return lines[-1] if lines else "no output"
