"""What the command-line benchmarks share: the `rgrid` a user types, a timed run, a
throwaway embedded stack, and the CPU time of processes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from rgrid.client.stack import start_stack, stop_stack
from rgrid.config import load_settings

# The console script beside this interpreter: what `rgrid …` in a shell starts.
RGRID = [str(Path(sys.executable).with_name("rgrid"))]


def timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    """Seconds `argv` took to exit; a failure ends the benchmark with its stderr."""
    began = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return elapsed


@contextlib.contextmanager
def temporary_stack(port: int, **env: str) -> Iterator[Path]:
    """An embedded stack in a fresh RGRID_HOME on `port`, stopped afterwards; yields a
    scratch dir to run from. `env` (RGRID_* settings) goes to this process's environment,
    so the stack and every timed command see it."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ.update(RGRID_HOME=str(root / "home"), RGRID_DEV_PORT=str(port), **env)
        settings = load_settings()
        start_stack(settings)
        try:
            yield root
        finally:
            stop_stack(settings)


def cpu_s(pid: int) -> tuple[float, float]:
    """A process's own CPU seconds and those of its reaped children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory now (VmRSS) or at its peak so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no {field} for pid {pid}")


class ForkedCommands:
    """The CPU of the commands the command server forks (an `rgrid …` started while the
    stack is up runs in one): the server ignores SIGCHLD, so the kernel adds none of it
    to the server's reaped time. Sampled from /proc every 20 ms while they run (each one
    loses at most its last 20 ms)."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.seen: dict[int, float] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.stopped.wait(0.02):
            for children in Path(f"/proc/{self.server_pid}/task").glob("*/children"):
                for pid in children.read_text().split():
                    with contextlib.suppress(OSError):  # it ended between list and read
                        self.seen[int(pid)] = cpu_s(int(pid))[0]

    def stop(self) -> float:
        self.stopped.set()
        self.thread.join()
        return sum(self.seen.values())
