"""A 10,000-item trivial batch on the embedded stack: it completes, the control worker's
memory stays flat, its histories stay bounded and its progress query stays cheap.

    .venv/bin/python bench/batch_10k.py                # 10,000 items, parallel 8
    .venv/bin/python bench/batch_10k.py --items 2000   # a shorter look

Prints wall time, items per second, the control worker's peak RSS (goal < 400 MB) and its
RSS after the first tenth of the items (flat memory: the two stay close), the largest
history (every run of the batch, and a sample of its items' workflows), the median
time of a `progress` query asked while the batch ran, and the CPU the CLI following the
batch used (it reads only newly ended items: reading every row each poll grew with the
square of the batch).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from commands import RGRID, ForkedCommands, rss_mb, temporary_stack

from rgrid import names
from rgrid.client.stack import read_children
from rgrid.config import Settings, load_settings
from rgrid.infra.temporal import connect

PARALLEL = 8
SAMPLED_ITEMS = 200  # items' histories read for the largest size (they share one shape)


def child_pid(settings: Settings, name: str) -> int:
    record = read_children(settings)
    assert record is not None
    for child in record.children:
        if child.name == name and child.process is not None:
            return child.process.pid
    raise SystemExit(f"the stack has no {name}")


class Watch(threading.Thread):
    """Samples the control worker's RSS and asks the batch's progress while it runs."""

    def __init__(self, settings: Settings, pid: int, items: int) -> None:
        super().__init__(daemon=True)
        self.settings, self.pid, self.items = settings, pid, items
        self.batch_id: str | None = None
        self.rss_at_tenth: float | None = None
        self.query_ms: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        asyncio.run(self._watch())

    async def _watch(self) -> None:
        client = await connect(self.settings)
        while not self.stop.is_set():
            await asyncio.sleep(1.0)
            if self.batch_id is None:
                # The CLI prints its id only at the end: ask Temporal (this stack's only batch).
                async for execution in client.list_workflows("WorkflowType = 'BatchWorkflow'"):
                    self.batch_id = execution.id
                continue
            began = time.perf_counter()
            try:
                progress = await client.get_workflow_handle(self.batch_id).query("progress")
            except Exception:  # not started yet, or between runs of continue-as-new
                continue
            self.query_ms.append((time.perf_counter() - began) * 1000)
            done = progress["succeeded"] + progress["cached"] + progress["failed"]
            if self.rss_at_tenth is None and done >= self.items / 10:
                self.rss_at_tenth = rss_mb(self.pid)


def batch_id_of(root: Path) -> str:
    """The batch id in the one JSON document `rgrid run --batch --json` printed at its end."""
    return str(json.loads((root / "run.out").read_text())["batch_id"])


async def largest_history(settings: Settings, batch_id: str) -> tuple[int, int, int]:
    """(largest batch run, largest sampled item, batch runs): history sizes in events."""
    client = await connect(settings)
    runs, items = [], []
    async for execution in client.list_workflows(f"WorkflowId = '{batch_id}'"):
        runs.append(execution.run_id)
    children = [
        execution.id
        async for execution in client.list_workflows(
            f"{names.BATCH_ID_ATTRIBUTE.name} = '{batch_id}' AND WorkflowId != '{batch_id}'"
        )
    ]
    batch_sizes = [
        len((await client.get_workflow_handle(batch_id, run_id=run).fetch_history()).events)
        for run in runs
    ]
    for child in random.sample(children, min(SAMPLED_ITEMS, len(children))):
        items.append(len((await client.get_workflow_handle(child).fetch_history()).events))
    return max(batch_sizes, default=0), max(items, default=0), len(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=10_000)
    args = parser.parse_args()
    with temporary_stack(27334, RGRID_LOCAL_SLOTS=str(PARALLEL)) as root:
        settings = load_settings()
        data = root / "data"
        data.mkdir()
        for index in range(args.items):
            (data / f"item{index:05d}.txt").write_text(str(index))
        (root / "trivial.py").write_text("print('ok')\n")
        pid = child_pid(settings, "control")
        rss_before = rss_mb(pid)
        watch = Watch(settings, pid, args.items)
        watch.start()
        # The follower: the `rgrid run` below and the command it has the command server fork.
        forked = ForkedCommands(child_pid(settings, "command-server"))
        began = time.perf_counter()
        with (root / "run.out").open("w") as out:
            run = subprocess.Popen(
                [*RGRID, "run", "trivial.py", "--batch", "data/*.txt",
                 "--parallel", str(PARALLEL), "--no-watch", "--json", "--remote-only"],
                cwd=root, stdout=out, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            run.wait()
        wall_s = time.perf_counter() - began
        thin = resource.getrusage(resource.RUSAGE_CHILDREN)
        follower_s = forked.stop() + thin.ru_utime + thin.ru_stime
        watch.stop.set()
        watch.join()  # its last query ends before the stack stops
        if run.returncode != 0:
            raise SystemExit(f"the batch failed: {run.stderr.read()[-2000:]}")  # type: ignore[union-attr]
        batch_id = batch_id_of(root)
        if child_pid(settings, "control") != pid:
            raise SystemExit("the control worker restarted during the batch")
        peak = rss_mb(pid, "VmHWM")
        batch_events, item_events, runs = asyncio.run(largest_history(settings, batch_id))
        print(f"{args.items} trivial items, parallel {PARALLEL}")
        print(f"  wall time {wall_s:.1f} s, {args.items / wall_s:.1f} items/s")
        tenth = watch.rss_at_tenth or 0
        print(f"  control worker RSS: {rss_before:.0f} MB idle, {tenth:.0f} MB at a tenth,"
              f" peak {peak:.0f} MB (goal < 400)")  # fmt: skip
        print(f"  the follower (`rgrid run` and its forked command): {follower_s:.1f} s of CPU,"
              f" {follower_s / args.items * 1000:.1f} ms per item")  # fmt: skip
        print(f"  largest history: {batch_events} events (the batch, {runs} runs), "
              f"{item_events} (an item, of {SAMPLED_ITEMS} sampled)")  # fmt: skip
        if watch.query_ms:
            print(f"  progress query: median {statistics.median(watch.query_ms):.1f} ms "
                  f"over {len(watch.query_ms)} asked while it ran")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
