"""What the command-line benchmarks share: the `rgrid` a user types, and a timed run."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

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
