"""Latency of a trivial `rgrid run` on a warm embedded stack, against running the same
script directly with the same interpreter, side by side in one process.

    .venv/bin/python bench/run_latency.py [--runs 10]

Prints medians and the ratio, and splits rgrid's time into CLI start-up (`rgrid version`)
and the run itself (submit -> outputs, measured in-process through rgrid.client).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

from commands import RGRID, temporary_stack, timed

from rgrid.client import submit
from rgrid.client.session import Session
from rgrid.client.watch import wait_for_result
from rgrid.config import load_settings

# Marked not cacheable: every measured run must really run (see bench/cache_hit.py).
SCRIPT = "open('out.txt', 'w').write('hi')\nprint('hi')\n# rgrid: no-cache\n"


async def in_process(script: Path, cwd: Path) -> float:
    session = Session(load_settings())
    began = time.perf_counter()
    spec, _ = await submit.prepare(session, submit.RunRequest(script=script), cwd)
    handle = await submit.start(session, spec)
    await wait_for_result(session, handle.id)
    elapsed = time.perf_counter() - began
    await session.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    with temporary_stack(27233) as root:
        env = dict(os.environ)
        script = root / "trivial.py"
        script.write_text(SCRIPT)
        timed([*RGRID, "run", "trivial.py"], root, env)  # warm: venv built, caches hot
        direct = [timed([sys.executable, "trivial.py"], root, env) for _ in range(runs)]
        cli = [timed([*RGRID, "run", "trivial.py"], root, env) for _ in range(runs)]
        startup = [timed([*RGRID, "version"], root, env) for _ in range(runs)]
        inner = [asyncio.run(in_process(script, root)) for _ in range(runs)]
    med = statistics.median
    print(f"runs per measurement:            {runs}")
    print(f"python trivial.py (baseline):    {med(direct) * 1000:7.0f} ms")
    print(f"rgrid run trivial.py (CLI):      {med(cli) * 1000:7.0f} ms")
    print(f"  of which CLI start-up:         {med(startup) * 1000:7.0f} ms")
    print(f"  submit -> outputs, in-process: {med(inner) * 1000:7.0f} ms")
    print(f"ratio rgrid run / direct:        {med(cli) / med(direct):7.1f}x")


if __name__ == "__main__":
    main()
