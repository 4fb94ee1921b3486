"""How fast the CLI answers, with the embedded stack's command server and without it (every
team user's case), beside `python -c pass` and the `temporal` CLI as the ecosystem's
reference, side by side in one process.

    .venv/bin/python bench/cli_startup.py [--runs 5]

Goals (issue 14): `rgrid version` without a server <= 3x `python -c pass`; `rgrid status ID`
without a server <= 1.5x `temporal workflow describe`. These machines set
PYTHONDONTWRITEBYTECODE=1, so Python writes no bytecode itself: what exists is what
scripts/bootstrap.sh compiled at install (all of site-packages and rgrid, as pip would),
which such a user has too. `--bytecode` lets Python write its cache as well.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from commands import RGRID, temporary_stack, timed

from rgrid.worker.dev import temporal_binary

SCRIPT = "print('hi')\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--bytecode", action="store_true", help="let Python cache bytecode")
    args = parser.parse_args()
    if args.bytecode:
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    with temporary_stack(27333) as root:
        env = dict(os.environ)
        (root / "hi.py").write_text(SCRIPT)
        done = subprocess.run(
            [*RGRID, "run", "hi.py", "--json"], cwd=root, env=env, capture_output=True, text=True
        )
        execution_id = json.loads(done.stdout)["id"]
        bare = {**env, "RGRID_NO_COMMAND_SERVER": "1"}
        address = f"127.0.0.1:{env['RGRID_DEV_PORT']}"
        describe_argv = [temporal_binary(), "workflow", "describe", f"--address={address}"]
        cases: list[tuple[str, list[str], dict[str, str]]] = [
            ("python -c pass", [sys.executable, "-c", "pass"], env),
            (
                "temporal workflow describe",
                [*describe_argv, "-w", execution_id],
                env,
            ),
        ]
        for label, argv in (
            ("rgrid version", ["version"]),
            ("rgrid --help", ["--help"]),
            ("rgrid status ID", ["status", execution_id]),
            ("rgrid list", ["list"]),
        ):
            cases.append((f"{label} (server)", [*RGRID, *argv], env))
            cases.append((f"{label} (no server)", [*RGRID, *argv], bare))
        for _, argv, case_env in cases:  # warm the OS caches once
            timed(argv, root, case_env)
        med = {
            label: statistics.median(timed(argv, root, case_env) for _ in range(args.runs))
            for label, argv, case_env in cases
        }
    base, describe = med["python -c pass"], med["temporal workflow describe"]
    cache = "compiled at install, and written by Python" if args.bytecode else "compiled at install"
    print(f"runs per figure: {args.runs}; bytecode: {cache}")
    print(f"{'command':36} {'median':>9} {'x python':>9} {'x describe':>11}")
    for label, seconds in med.items():
        ratios = f"{seconds / base:8.1f}x {seconds / describe:10.2f}x"
        print(f"{label:36} {seconds * 1000:7.0f}ms {ratios}")


if __name__ == "__main__":
    main()
