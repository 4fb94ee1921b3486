"""Child processes that cannot outlive their parent, and records of processes that
survive a reused pid: Linux's parent-death signal, process groups and kernel start times.
Standard library only (the CLI reads records before anything heavy is imported)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36

_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl  # resolved before any fork: the child must only call it


def dying_with_parent(argv: list[str]) -> list[str]:
    """`argv` exec'd through util-linux's setpriv, which sets the parent-death signal:
    the child gets SIGKILL when the thread that forked it dies. Not a preexec_fn: Python
    run between fork and exec in a threaded parent can deadlock the child before exec.
    Without setpriv (not a Debian node), `argv` as it is: process groups still end it."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


def become_subreaper() -> None:
    """Orphans of our children (a dead agent's scripts) become our children, so they can
    be found and ended instead of running on unowned."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) may hold spaces, so split after its ")".
    return int(stat.rsplit(")", 1)[1].split()[19])


def parent_pid(pid: int) -> int | None:
    """The process's parent, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def is_same(pid: int, ticks: int) -> bool:
    """True when pid still names the process that started at `ticks`."""
    return start_ticks(pid) == ticks


def children_of(pid: int) -> list[int]:
    """Live processes whose parent is pid."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and parent_pid(int(entry.name)) == pid:
            found.append(int(entry.name))
    return found


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal the process group pid leads, and pid itself; gone is not an error. Never
    our own group (a command forked by the command server being ended)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgrp() != pid:
            os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def wait_gone(alive: Callable[[], bool], timeout_s: float) -> bool:
    """Poll until alive() is False; False if it still is after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while alive():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
