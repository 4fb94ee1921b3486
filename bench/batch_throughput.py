"""rgrid batch against `xargs -P` over the same runtime (the node's own venv python),
side by side in one script.

    .venv/bin/python bench/batch_throughput.py              # both measurements
    .venv/bin/python bench/batch_throughput.py --only sleep # 48 one-second items
    .venv/bin/python bench/batch_throughput.py --only trivial --items 500

`sleep`: 48 items that each sleep 1 s, parallel 8; prints the throughput ratio
(rgrid items/s over xargs items/s; goal >= 0.85).
`trivial`: N items that only print, parallel 8; prints rgrid's orchestration overhead
per item: (rgrid wall time - xargs wall time) / N (goal <= 60 ms).
Both print the CPU seconds per item of each process (the `rgrid run` CLI and the command
the command server forked for it, the stack's supervisor, Temporal, the control worker,
the agent; the scripts, reaped by the agent or the supervisor, apart), the history
events per item (the batch's runs and its items' workflows), and where an item's time
goes (medians from the events' times: its start to its claim on a node, to its execute
step, the execute step with the script in it, the wind-down, and the batch's part
between one item's end and the next one's start).
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from commands import ForkedCommands, cpu_s, rss_mb
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from rgrid import names
from rgrid.client.stack import read_children, read_stack, start_stack, stop_stack
from rgrid.config import Settings, load_settings
from rgrid.infra.temporal import connect

PARALLEL = 8


def stack_pids(settings: Settings) -> dict[str, int]:
    """The stack's processes by name: its supervisor and each child."""
    info, record = read_stack(settings), read_children(settings)
    assert info is not None and record is not None
    pids = {"supervisor": info.pid}
    pids.update({c.name: c.process.pid for c in record.children if c.process is not None})
    return pids


class Batch:
    """One timed `rgrid run --batch`: wall time, CPU seconds per process, its id."""

    def __init__(self, settings: Settings, root: Path, script: str, pattern: str) -> None:
        pids = stack_pids(settings)
        before = {name: cpu_s(pid) for name, pid in pids.items()}
        cli_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        forked = ForkedCommands(pids["command-server"])
        began = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "rgrid", "run", script, "--batch", pattern,
             "--parallel", str(PARALLEL), "--no-watch", "--json", "--remote-only"],
            cwd=root, capture_output=True, text=True,
        )  # fmt: skip
        self.wall_s = time.perf_counter() - began
        if done.returncode != 0:
            raise SystemExit(f"rgrid batch failed: {done.stderr[-2000:]}")
        cli_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu = {"rgrid run": cli_after.ru_utime + cli_after.ru_stime
                    - cli_before.ru_utime - cli_before.ru_stime}  # fmt: skip
        self.cpu["its command"] = forked.stop()
        # What the stack's processes reaped is the scripts: an agent reaps what it starts,
        # and the supervisor (a subreaper) what a sandbox left to be reparented.
        self.scripts_cpu = 0.0
        for name, pid in pids.items():
            own, reaped = cpu_s(pid)
            self.cpu[name] = own - before[name][0]
            self.scripts_cpu += reaped - before[name][1]
        self.peak_rss = {name: rss_mb(pids[name], "VmHWM") for name in ("temporal", "control")}
        self.batch_id = str(json.loads(done.stdout)["batch_id"])

    def report(self, settings: Settings, items: int) -> None:
        per_item = {name: cpu / items * 1000 for name, cpu in self.cpu.items()}
        shown = ", ".join(f"{name} {ms:.0f}" for name, ms in per_item.items())
        print(f"  CPU ms per item: {shown}")
        print(f"    all rgrid processes and Temporal: {sum(per_item.values()):.0f} ms"
              f" (goal <= 50); the scripts: {self.scripts_cpu / items * 1000:.0f} ms")  # fmt: skip
        rss = ", ".join(f"{name} {mb:.0f}" for name, mb in self.peak_rss.items())
        print(f"  peak RSS MB so far: {rss}")
        asyncio.run(histories(settings, self.batch_id)).report(items)


# An item's workflow from its start to its end, and the batch's part between two items.
ITEM_GAPS = ("start -> claimed", "claimed -> running", "execute", "executed -> closed")
BATCH_GAP = "closed -> next started"


def _ms(event: HistoryEvent) -> float:
    return event.event_time.ToNanoseconds() / 1e6


class Histories:
    """Every history of a batch (each of its runs, each item's workflow): their sizes, and
    where an item's time went, from its events' times."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.gaps: dict[str, list[float]] = {name: [] for name in (*ITEM_GAPS, BATCH_GAP)}

    def add(self, events: Sequence[HistoryEvent], is_item: bool) -> None:
        self.sizes.append(len(events))
        if is_item:
            self._item_gaps(events)
        else:
            self._batch_gaps(events)

    def _item_gaps(self, events: Sequence[HistoryEvent]) -> None:
        started = [e for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]
        ended = [e for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED]
        if len(started) != 2 or len(ended) != 2:
            return  # not the usual claim then execute (a retry, a cache hit)
        times = [_ms(e) for e in (events[0], started[0], started[1], ended[1], events[-1])]
        for name, (begin, end) in zip(ITEM_GAPS, itertools.pairwise(times), strict=True):
            self.gaps[name].append(end - begin)

    def _batch_gaps(self, events: Sequence[HistoryEvent]) -> None:
        # A child's end to the start of the one that takes its place in the window.
        ended: float | None = None
        for event in events:
            if event.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED:
                ended = _ms(event) if ended is None else ended
            elif event.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
                if ended is not None:
                    self.gaps[BATCH_GAP].append(_ms(event) - ended)
                ended = None

    def report(self, items: int) -> None:
        print(f"  history events per item: {sum(self.sizes) / items:.1f}"
              f" (largest history {max(self.sizes, default=0)})")  # fmt: skip
        shown = ", ".join(
            f"{name} {statistics.median(gaps):.0f}" for name, gaps in self.gaps.items() if gaps
        )
        print(f"  an item's time, median ms: {shown}")


async def histories(settings: Settings, batch_id: str) -> Histories:
    """Every history of the batch: each of its runs, each item's workflow."""
    client = await connect(settings)
    query = f"WorkflowId = '{batch_id}' OR {names.BATCH_ID_ATTRIBUTE.name} = '{batch_id}'"
    found = Histories()
    async for execution in client.list_workflows(query):
        history = await client.get_workflow_handle(
            execution.id, run_id=execution.run_id
        ).fetch_history()
        found.add(history.events, is_item=execution.id != batch_id)
    return found


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
    found = glob.glob(
        str(home / "nodes" / "*" / "cache" / "layers" / "venv-*" / "*" / "bin" / "python")
    )
    if not found:
        raise SystemExit("no node venv found after the warm-up run")
    return found[0]


def measure(
    settings: Settings, root: Path, name: str, body: str, count: int
) -> tuple[Batch, float]:
    data = root / name
    data.mkdir()
    files = []
    for index in range(count):
        path = data / f"item{index:04d}.txt"
        path.write_text(str(index))
        files.append(path)
    (root / f"{name}.py").write_text(body)
    batch = Batch(settings, root, f"{name}.py", f"{name}/*.txt")
    xargs_s = xargs_batch(root, node_python(root / "home"), f"{name}.py", files)
    return batch, xargs_s


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
            Batch(settings, root, "warm.py", "warm/*.txt")  # builds the venv, warms caches
            if args.only in (None, "sleep"):
                batch, xargs_s = measure(
                    settings, root, "sleep", "import time; time.sleep(1)\n", 48
                )
                rgrid_s = batch.wall_s
                print(f"48 x 1 s items, parallel {PARALLEL}")
                print(f"  xargs -P {PARALLEL}: {xargs_s:6.2f} s  ({48 / xargs_s:.2f} items/s)")
                print(f"  rgrid batch:  {rgrid_s:6.2f} s  ({48 / rgrid_s:.2f} items/s)")
                print(f"  throughput ratio rgrid/xargs: {xargs_s / rgrid_s:.2f} (goal >= 0.85)")
                batch.report(settings, 48)
            if args.only in (None, "trivial"):
                n = args.items
                batch, xargs_s = measure(settings, root, "trivial", "print('ok')\n", n)
                rgrid_s = batch.wall_s
                print(f"{n} trivial items, parallel {PARALLEL}")
                print(f"  xargs -P {PARALLEL}: {xargs_s:6.2f} s")
                print(f"  rgrid batch:  {rgrid_s:6.2f} s")
                overhead = (rgrid_s - xargs_s) / n * 1000
                print(f"  orchestration overhead per item: {overhead:.0f} ms (goal <= 60 ms)")
                batch.report(settings, n)
        finally:
            stop_stack(settings)


if __name__ == "__main__":
    main()
