"""A cache hit against a warm real run, CLI to outputs on disk, side by side in one script.

    .venv/bin/python bench/cache_hit.py [--runs 9]

Real runs differ in one argument each time (a miss, on a warm node venv); hits repeat one
run. Both are timed from starting the `rgrid run` process to its exit, when the outputs
are in ./outputs. Also prints the CLI's bare start-up (`rgrid version`), which bounds
how fast any command can be. The goal is a hit in 0.3 s or less.
"""

from __future__ import annotations

import argparse
import os
import statistics

from commands import RGRID, temporary_stack, timed

SCRIPT = "import sys\nopen('out.txt', 'w').write(sys.argv[1])\nprint(sys.argv[1])\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9)
    runs = parser.parse_args().runs
    with temporary_stack(27433) as root:
        env = dict(os.environ)
        (root / "job.py").write_text(SCRIPT)
        timed([*RGRID, "run", "job.py", "warm"], root, env)  # venv built, caches hot
        real = [timed([*RGRID, "run", "job.py", f"miss-{i}"], root, env) for i in range(runs)]
        hits = [timed([*RGRID, "run", "job.py", "warm"], root, env) for _ in range(runs)]
        startup = [timed([*RGRID, "version"], root, env) for _ in range(runs)]
        if (root / "outputs" / "out.txt").read_text() != "warm":
            raise SystemExit("the cache hit did not bring the outputs back")
    med = statistics.median
    print(f"runs per measurement:        {runs}")
    print(f"warm real run (miss):        {med(real) * 1000:6.0f} ms")
    print(f"cache hit:                   {med(hits) * 1000:6.0f} ms   (goal <= 300 ms)")
    print(f"  of which CLI start-up:     {med(startup) * 1000:6.0f} ms")
    print(f"ratio hit / real run:        {med(hits) / med(real):6.2f}")


if __name__ == "__main__":
    main()
