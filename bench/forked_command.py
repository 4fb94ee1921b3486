"""What the command server's warm-up saves each forked `rgrid run`: a trivial run forked
from a process that imported the CLI as the server does, without and with
command_server.warm(), side by side (CPU and wall time of the forked child).

    .venv/bin/python bench/forked_command.py [--rounds 3] [--runs 5]

Each round starts one cold and one warm parent; each parent forks `--runs` commands.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from commands import temporary_stack

SCRIPT = "print('hi')\n# rgrid: no-cache\n"


def parent(warm: bool, runs: int) -> None:
    """Import what the server imports, maybe warm up, fork `runs` commands; print their
    CPU and wall seconds as JSON."""
    from rgrid.cli import app, command_server

    command = command_server.loaded_cli()
    if warm:
        command_server.warm()
    timings = []
    for _ in range(runs):
        read, write = os.pipe()
        if os.fork() == 0:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            sys.argv = ["rgrid", "run", "trivial.py"]
            cpu, wall = time.process_time(), time.perf_counter()
            code = app.run_command(command)
            spent = [time.process_time() - cpu, time.perf_counter() - wall]
            os.write(write, json.dumps(spent).encode())
            os._exit(code)
        os.close(write)
        with os.fdopen(read) as answer:
            timings.append(json.loads(answer.read()))
        os.wait()
    print(json.dumps(timings))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--parent", choices=["cold", "warm"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.parent:
        parent(args.parent == "warm", args.runs)
        return
    found: dict[str, list[list[float]]] = {"cold": [], "warm": []}
    with temporary_stack(27644) as root:
        (root / "trivial.py").write_text(SCRIPT)
        for _ in range(args.rounds):
            for kind in found:
                argv = [sys.executable, __file__, "--parent", kind, "--runs", str(args.runs)]
                done = subprocess.run(argv, cwd=root, capture_output=True, text=True, check=True)
                found[kind] += json.loads(done.stdout)
    print(f"forked `rgrid run trivial.py`, median of {args.rounds * args.runs} each")
    for kind, timings in found.items():
        cpu = statistics.median(cpu for cpu, _ in timings) * 1000
        wall = statistics.median(wall for _, wall in timings) * 1000
        print(f"  {kind} server: {cpu:5.0f} ms CPU  {wall:5.0f} ms wall")
    cold, warm = (statistics.median(cpu for cpu, _ in found[k]) for k in ("cold", "warm"))
    print(f"  ratio warm/cold CPU: {warm / cold:.2f}")


if __name__ == "__main__":
    main()
