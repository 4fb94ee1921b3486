"""Memory and process bounds that count a whole run, not each of its processes.

A cgroup where one is writable (v2, or v1's memory and pids controllers): the kernel counts
and enforces. Otherwise a monitor sums the resident memory of the run's processes (the
descendants of its first process, and any process carrying the run's marker in its
environment, which finds double-forked escapees) and kills the run at the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import structlog

log = structlog.get_logger()

CGROUP_ROOT = Path("/sys/fs/cgroup")
MONITOR_EVERY_S = 0.2  # how far past the bound a run can get between two looks
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class RunCgroup:
    """The cgroup dirs of one run: one for v2, one per controller for v1."""

    dirs: list[Path] = field(default_factory=list)
    memory: Path | None = None  # the dir holding the memory controller's files
    version: int = 2

    def oom_killed(self) -> bool:
        """True if the kernel killed a process of the run at the memory bound."""
        if self.memory is None:
            return False
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        with contextlib.suppress(OSError):
            for line in (self.memory / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
            if self.version == 1:  # kernels without the oom_kill counter
                return int((self.memory / "memory.failcnt").read_text()) > 0
        return False

    def pids(self) -> set[int]:
        """Every process in the run's cgroups."""
        found: set[int] = set()
        for directory in self.dirs:
            with contextlib.suppress(OSError):
                found.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
        return found

    async def kill_all(self, remove: bool = True) -> None:
        """SIGKILL every process of the run, then remove the cgroups."""
        for _ in range(100):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.01)
        if not remove:
            return
        for directory in reversed(self.dirs):
            for _ in range(50):  # a killed process leaves its cgroup a moment after it dies
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    await asyncio.sleep(0.02)


def _own_cgroup(controller: str) -> str | None:
    """This process's cgroup path for a v1 controller, or for v2 ('')."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _id, controllers, path = line.split(":", 2)
            if controller in controllers.split(","):
                return path
    return None


def make_cgroup(name: str, memory_bytes: int, pids_max: int) -> RunCgroup | None:
    """A cgroup bounding one run, or None where none is writable here."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return _make_v2(name, memory_bytes, pids_max)
    return _make_v1(name, memory_bytes, pids_max)


def _make_v2(name: str, memory_bytes: int, pids_max: int) -> RunCgroup | None:
    own = _own_cgroup("")
    if own is None:
        return None
    parent = CGROUP_ROOT / own.lstrip("/")
    try:
        enabled = (parent / "cgroup.subtree_control").read_text().split()
        if not {"memory", "pids"} <= set(enabled):
            # Refused when this cgroup holds processes (the agent): then no cgroup.
            (parent / "cgroup.subtree_control").write_text("+memory +pids")
        directory = parent / name
        directory.mkdir()
    except OSError:
        return None
    group = RunCgroup(dirs=[directory], memory=directory, version=2)
    try:
        (directory / "memory.max").write_text(str(memory_bytes))
        with contextlib.suppress(FileNotFoundError):
            (directory / "memory.swap.max").write_text("0")
        (directory / "pids.max").write_text(str(pids_max))
    except OSError:
        directory.rmdir()
        return None
    return group


def _make_v1(name: str, memory_bytes: int, pids_max: int) -> RunCgroup | None:
    group = RunCgroup(version=1)
    try:
        for controller in ("memory", "pids"):
            own = _own_cgroup(controller)
            if own is None:
                raise OSError(f"no {controller} controller")
            directory = CGROUP_ROOT / controller / own.lstrip("/") / name
            directory.mkdir()
            group.dirs.append(directory)
        memory, pids = group.dirs
        (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
        with contextlib.suppress(OSError):  # absent without swap accounting
            (memory / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
        (pids / "pids.max").write_text(str(pids_max))
        group.memory = memory
    except OSError:
        for directory in group.dirs:
            with contextlib.suppress(OSError):
                directory.rmdir()
        return None
    return group


def run_processes(root_pid: int, marker: bytes) -> set[int]:
    """The run's processes without a cgroup: descendants of root_pid, and any process
    whose environment carries the run's marker (a double fork escapes the tree)."""
    parents: dict[int, int] = {}
    marked: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{pid}/stat").read_bytes()
            parents[pid] = int(stat[stat.rindex(b")") + 2 :].split()[1])
        with contextlib.suppress(OSError):
            if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                marked.add(pid)
    found = {root_pid} | marked
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in found and pid not in found:
                found.add(pid)
                grew = True
    return {pid for pid in found if pid in parents}


def resident_bytes(pids: set[int]) -> int:
    """The resident memory of these processes, summed."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    return total


def kill_processes(pids: set[int]) -> None:
    """SIGKILL each process; ones already gone are fine."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


async def watch_memory(
    cgroup: RunCgroup | None, root_pid: int, marker: bytes, limit: int, exceeded: asyncio.Event
) -> None:
    """End the whole run once it reaches its memory bound: when the kernel's OOM killer
    hit one of its processes (a cgroup), or when its summed resident memory passes `limit`."""
    while True:
        if cgroup is not None:
            if cgroup.oom_killed():
                exceeded.set()
                await cgroup.kill_all(remove=False)
        else:
            pids = await asyncio.to_thread(run_processes, root_pid, marker)
            if await asyncio.to_thread(resident_bytes, pids) > limit:
                exceeded.set()
                kill_processes(pids)
        if exceeded.is_set():
            log.warning("run_out_of_memory", limit=limit)
            return
        await asyncio.sleep(MONITOR_EVERY_S)
