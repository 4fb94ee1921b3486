"""A newcomer's first `rgrid run` on a machine with no stack running: seconds to the
submit (the run's id printed) and to the end, beside the Temporal dev server alone
starting until it answers (the floor under any embedded stack), in one process.

    .venv/bin/python bench/cold_start.py [--runs 3]

Goal (issue 20): <= 5 s to the first run's submit. Each run has a fresh RGRID_HOME and
config dir, so nothing of an earlier run is reused but the OS's file cache (the first,
unreported round warms it). Bytecode is whatever the install left: scripts/bootstrap.sh
compiles it, as pip would; these machines set PYTHONDONTWRITEBYTECODE=1, so Python
writes none itself.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from commands import RGRID

from rgrid.worker.dev import free_port, temporal_binary


def first_run(root: Path) -> tuple[float, float]:
    """Seconds to the run's id and to its end, for `rgrid run` on a fresh home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RGRID_", "XDG_"))}
    env.update(
        RGRID_HOME=str(root / "rgrid"),
        XDG_CONFIG_HOME=str(root / "config"),
        RGRID_DEV_PORT=str(free_port()),
        RGRID_DEV_UI_PORT=str(free_port()),
        RGRID_CODEC_PORT=str(free_port()),
        RGRID_RUNTIME="process",
    )
    (root / "hi.py").write_text("print('hi')\n")
    began = time.perf_counter()
    proc = subprocess.Popen(
        [*RGRID, "run", "hi.py"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    submitted = None
    for line in proc.stdout:
        if submitted is None and line.startswith("exec-"):
            submitted = time.perf_counter() - began
    ended = time.perf_counter() - began
    subprocess.run([*RGRID, "dev", "stop"], env=env, capture_output=True, check=True)
    if proc.wait() != 0 or submitted is None:
        raise SystemExit("rgrid run failed")
    return submitted, ended


def temporal_alone(root: Path) -> float:
    """Seconds until a fresh `temporal server start-dev` answers a request."""
    port = free_port()
    argv = [temporal_binary(), "server", "start-dev", "--headless", "--port", str(port),
            "--db-filename", str(root / "t.db"), "--log-level", "error"]  # fmt: skip
    began = time.perf_counter()
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ask = [temporal_binary(), "operator", "namespace", "describe", "default",
               "--address", f"127.0.0.1:{port}"]  # fmt: skip
        while subprocess.run(ask, capture_output=True).returncode != 0:
            time.sleep(0.05)
        return time.perf_counter() - began
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows: list[tuple[float, float, float]] = []
    for round_ in range(args.runs + 1):  # round 0 warms the file cache
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            submit, end = first_run(Path(a))
            alone = temporal_alone(Path(b))
        if round_:
            rows.append((submit, end, alone))
            print(f"run {round_}: submit {submit:.2f} s, end {end:.2f} s, temporal {alone:.2f} s")
    submit, end, alone = (statistics.median(column) for column in zip(*rows, strict=True))
    print(f"median of {args.runs}: first `rgrid run` submit {submit:.2f} s, end {end:.2f} s;")
    print(
        f"  Temporal dev server alone {alone:.2f} s; submit / Temporal alone {submit / alone:.1f}x"
    )


if __name__ == "__main__":
    main()
