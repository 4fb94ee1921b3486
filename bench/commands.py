"""What the command-line benchmarks share: the `rgrid` a user types, a timed run, and a
throwaway embedded stack."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
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
