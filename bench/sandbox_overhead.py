"""What the bubblewrap sandbox costs a trivial run of the process runtime: the same
ProcessRuntime.run with and without the sandbox, alternated, side by side in one script.

    .venv/bin/python bench/sandbox_overhead.py            # 15 runs of each
    .venv/bin/python bench/sandbox_overhead.py --runs 31

Prints the median of each, their difference (goal: the sandbox costs <= 30 ms) and the
ratio. The layer (venv) is built before timing; both sides use it warm.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from ulid import ULID

from rgrid.infra.runtime.base import RunRequest
from rgrid.infra.runtime.process import ProcessRuntime

TRIVIAL = "print('hello')\n"


async def one_run(runtime: ProcessRuntime, root: Path) -> float:
    lease = root / "leases" / str(ULID())
    (lease / "work").mkdir(parents=True)
    (lease / "work" / "trivial.py").write_text(TRIVIAL)
    request = RunRequest(
        execution_id=f"exec-{ULID()}",
        work_dir=lease / "work",
        tmp_dir=lease / "tmp",
        script="trivial.py",
    )
    began = time.perf_counter()
    outcome = await runtime.run(request, lambda _stream, _data: None)
    elapsed = time.perf_counter() - began
    if outcome.exit_code != 0:
        raise SystemExit(f"trivial run failed: {outcome}")
    shutil.rmtree(lease)
    return elapsed


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        sandboxed = ProcessRuntime(root / "cache", sandbox=True)
        if not sandboxed.sandboxed:
            raise SystemExit(f"no sandbox on this machine: {sandboxed.isolation}")
        plain = ProcessRuntime(root / "cache", sandbox=False, allow_unsandboxed=True)
        await one_run(sandboxed, root)  # builds the venv layer; warms the page cache
        await one_run(plain, root)
        with_sandbox: list[float] = []
        without: list[float] = []
        for _ in range(runs):  # alternated, so drift on a shared machine hits both alike
            with_sandbox.append(await one_run(sandboxed, root))
            without.append(await one_run(plain, root))
    a, b = statistics.median(with_sandbox), statistics.median(without)
    print(f"runs: {runs} of each, trivial script, process runtime, warm venv layer")
    print(f"with the sandbox:    median {a * 1000:7.1f} ms")
    print(f"without the sandbox: median {b * 1000:7.1f} ms")
    print(f"sandbox cost: {(a - b) * 1000:+.1f} ms (goal <= 30 ms); ratio {a / b:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    asyncio.run(main(parser.parse_args().runs))
