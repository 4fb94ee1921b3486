"""rgrid batch against `xargs -P` over the same runtime (the node's own venv python),
side by side in one script.

    .venv/bin/python bench/batch_throughput.py              # both measurements
    .venv/bin/python bench/batch_throughput.py --only sleep # 48 one-second items
    .venv/bin/python bench/batch_throughput.py --only trivial --items 500

`sleep`: 48 items that each sleep 1 s, parallel 8; prints the throughput ratio
(rgrid items/s over xargs items/s; goal >= 0.85).
`trivial`: N items that only print, parallel 8; prints rgrid's orchestration overhead
per item: (rgrid wall time - xargs wall time) / N (goal <= 60 ms).
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rgrid.client.stack import start_stack, stop_stack
from rgrid.config import load_settings

PARALLEL = 8


def rgrid_batch(root: Path, script: str, pattern: str) -> float:
    began = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rgrid",
            "run",
            script,
            "--batch",
            pattern,
            "--parallel",
            str(PARALLEL),
            "--no-watch",
            "--json",
            "--remote-only",
        ],
        cwd=root,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"rgrid batch failed: {done.stderr[-2000:]}")
    return elapsed


def xargs_batch(root: Path, python: str, script: str, files: list[Path]) -> float:
    listing = "\n".join(str(f) for f in files)
    began = time.perf_counter()
    subprocess.run(
        ["xargs", "-P", str(PARALLEL), "-n", "1", python, script],
        cwd=root,
        input=listing,
        text=True,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - began


def node_python(home: Path) -> str:
    """The interpreter the process runtime gives scripts (built by the warm-up run)."""
    found = glob.glob(str(home / "nodes" / "*" / "cache" / "venvs" / "*" / "bin" / "python"))
    if not found:
        raise SystemExit("no node venv found after the warm-up run")
    return found[0]


def measure(root: Path, name: str, body: str, count: int) -> tuple[float, float]:
    data = root / name
    data.mkdir()
    files = []
    for index in range(count):
        path = data / f"item{index:04d}.txt"
        path.write_text(str(index))
        files.append(path)
    (root / f"{name}.py").write_text(body)
    rgrid_s = rgrid_batch(root, f"{name}.py", f"{name}/*.txt")
    xargs_s = xargs_batch(root, node_python(root / "home"), f"{name}.py", files)
    return rgrid_s, xargs_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["sleep", "trivial"])
    parser.add_argument("--items", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ.update(
            RGRID_HOME=str(root / "home"),
            RGRID_DEV_PORT="27333",
            RGRID_LOCAL_SLOTS=str(PARALLEL),
        )
        settings = load_settings()
        start_stack(settings)
        try:
            (root / "warm").mkdir()
            (root / "warm" / "a.txt").write_text("a")
            (root / "warm.py").write_text("print('warm')\n")
            rgrid_batch(root, "warm.py", "warm/*.txt")  # builds the venv, warms caches
            if args.only in (None, "sleep"):
                rgrid_s, xargs_s = measure(root, "sleep", "import time; time.sleep(1)\n", 48)
                print(f"48 x 1 s items, parallel {PARALLEL}")
                print(f"  xargs -P {PARALLEL}: {xargs_s:6.2f} s  ({48 / xargs_s:.2f} items/s)")
                print(f"  rgrid batch:  {rgrid_s:6.2f} s  ({48 / rgrid_s:.2f} items/s)")
                print(f"  throughput ratio rgrid/xargs: {xargs_s / rgrid_s:.2f} (goal >= 0.85)")
            if args.only in (None, "trivial"):
                n = args.items
                rgrid_s, xargs_s = measure(root, "trivial", "print('ok')\n", n)
                print(f"{n} trivial items, parallel {PARALLEL}")
                print(f"  xargs -P {PARALLEL}: {xargs_s:6.2f} s")
                print(f"  rgrid batch:  {rgrid_s:6.2f} s")
                overhead = (rgrid_s - xargs_s) / n * 1000
                print(f"  orchestration overhead per item: {overhead:.0f} ms (goal <= 60 ms)")
        finally:
            stop_stack(settings)


if __name__ == "__main__":
    main()
