"""The --no-cache batch of issue 23, repeated: N items of a trivial script with
`rgrid run --no-cache triv.py --batch "items/*.txt" --parallel 8`, process runtime, on a
fresh embedded stack. Every item must succeed; prints the wall time and how many
dependency layers the nodes built (goal: one per node for the batch, not one per item).

    .venv/bin/python bench/layer_rebuild.py               # 2,000 items
    .venv/bin/python bench/layer_rebuild.py --items 200
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from commands import RGRID

from rgrid.client.stack import start_stack, stop_stack
from rgrid.config import load_settings

PORT = 27483


def main(items: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        home = root / "home"
        os.environ.update(RGRID_HOME=str(home), RGRID_DEV_PORT=str(PORT), RGRID_RUNTIME="process")
        settings = load_settings()
        (root / "items").mkdir()
        for i in range(items):
            (root / "items" / f"i_{i:04d}.txt").write_text(f"{i}\n")
        (root / "triv.py").write_text("import sys; print(open(sys.argv[1]).read().strip())\n")
        start_stack(settings)
        try:
            began = time.perf_counter()
            done = subprocess.run(
                [
                    *RGRID,
                    *("run", "--no-cache", "--runtime", "process", "triv.py"),
                    *("--batch", "items/*.txt", "--parallel", "8", "--no-watch", "--json"),
                ],
                cwd=root,
                capture_output=True,
                text=True,
            )
            elapsed = time.perf_counter() - began
        finally:
            stop_stack(settings)
        # Each build logs one `layer_built` line in its agent's log (flushed at stop).
        builds = sum(
            log.read_text(errors="replace").count('"layer_built"')
            + log.read_text(errors="replace").count(" layer_built ")
            for log in home.rglob("*.log")
        )
    print(f"items: {items}, parallel 8, --no-cache, process runtime")
    print(f"rgrid exit code: {done.returncode}; wall time {elapsed:.1f} s")
    try:
        summary = json.loads(done.stdout)  # the batch's --json result, one document
        print("summary:", {k: v for k, v in summary.items() if not isinstance(v, list | dict)})
        print("failures:", len(summary.get("failures", [])))
    except (ValueError, IndexError):
        print("stdout tail:", done.stdout[-500:], "stderr tail:", done.stderr[-500:])
    print(f"layer builds: {builds}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    main(parser.parse_args().items)
