"""The chaos suite: a real embedded stack per test, a batch whose script reports every
run to a loopback HTTP counter this test owns, and kill -9 of the parts that must be
survived. Counts are by item name: lost = items whose script never finished a run,
duplicated = items whose script finished more than once.

Set RGRID_CHAOS_FIGURES=path to append each run's figures (JSON lines) for reports.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rgrid.models.stack import ChildStatus, SupervisorState
from tests.e2e.conftest import Cli, isolated_env

ITEMS = 60
# Two nodes of one slot each: an agent killed while its script runs holds that one item
# only (a second slot could hold an item whose script finished and whose outputs are not
# collected yet, which a dead node cannot hand over: see docs/processes.md).
NODES = 2
PARALLEL = 2

# One second of work between two reports: "start" when the script begins, "done" when
# its work is complete (only a finished run counts as a run).
SCRIPT = """
import os, pathlib, sys, time, urllib.request

source = pathlib.Path(sys.argv[-1])
def report(event):
    url = f"{os.environ['CHAOS_COUNTER']}/{event}/{source.name}"
    urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=60).read()

report("start")
time.sleep(1)
report("done")
pathlib.Path("result.txt").write_text(source.read_text().upper())
"""


class Counter:
    """Counts script runs per item, as the scripts report them over loopback HTTP."""

    def __init__(self) -> None:
        self.started: collections.Counter[str] = collections.Counter()
        self.done: collections.Counter[str] = collections.Counter()
        self.changed = threading.Condition()

    def record(self, event: str, item: str) -> None:
        with self.changed:
            (self.started if event == "start" else self.done)[item] += 1
            self.changed.notify_all()

    def wait_for(self, predicate, timeout_s: float = 600) -> None:  # type: ignore[no-untyped-def]
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self), timeout=timeout_s), (
                f"counter never got there: {sum(self.done.values())} done"
            )

    def running(self) -> list[str]:
        """Items whose latest run has started and not finished."""
        with self.changed:
            return [i for i, n in self.started.items() if n > self.done[i]]

    def lost(self, items: list[str]) -> list[str]:
        return [i for i in items if self.done[i] == 0]

    def duplicated(self, items: list[str]) -> list[str]:
        return [i for i in items if self.done[i] > 1]


@pytest.fixture
def counter() -> Iterator[tuple[Counter, str]]:
    count = Counter()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            _, event, item = self.path.split("/", 2)
            count.record(event, item)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield count, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@dataclass
class Stack:
    cli: Cli
    home: Path
    kills: list[dict[str, object]] = field(default_factory=list)

    def children(self) -> dict[str, ChildStatus]:
        state = SupervisorState.model_validate_json(
            (self.home / "dev" / "children.json").read_text()
        )
        return {child.name: child for child in state.children}

    def healthy(self) -> bool:
        try:
            children = self.children()
        except (OSError, ValueError):
            return False
        return all(c.ready for c in children.values())

    def kill(self, name: str) -> float:
        """kill -9 one child; the seconds until every child is running and ready again."""
        victim = self.children()[name]
        assert victim.process is not None and victim.ready
        killed_at = time.monotonic()
        os.kill(victim.process.pid, signal.SIGKILL)
        while True:
            try:
                now = self.children()[name]
            except (OSError, ValueError):
                now = victim
            replaced = now.process is not None and now.process.pid != victim.process.pid
            if replaced and self.healthy():
                break
            assert time.monotonic() - killed_at < 300, f"{name} did not come back: {now}"
            time.sleep(0.1)
        recovery = time.monotonic() - killed_at
        self.kills.append({"child": name, "recovery_s": round(recovery, 1)})
        return recovery


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    env = isolated_env(tmp_path)
    env.update(
        RGRID_LOCAL_NODES=str(NODES),
        RGRID_LOCAL_SLOTS="1",
        # A node that dies mid-item is noticed in seconds, not the default 30 s.
        RGRID_HEARTBEAT_TIMEOUT_S="5",
        RGRID_NO_COMMAND_SERVER="1",
    )
    stack = Stack(Cli(env=env, home=tmp_path / "rgrid"), tmp_path / "rgrid")
    started = stack.cli("dev", "start", timeout=300)
    assert started.code == 0, started.stderr
    yield stack
    stack.cli("dev", "stop", timeout=120)


@dataclass
class Batch:
    proc: subprocess.Popen[str]
    work: Path
    items: list[str]
    started_at: float

    def finish(self, timeout_s: float = 900) -> tuple[int, str]:
        _, stderr = self.proc.communicate(timeout=timeout_s)
        (self.work / "cli.stderr").write_text(stderr)  # kept for a look after a failure
        return self.proc.returncode, stderr

    def missing_outputs(self) -> list[str]:
        return [
            i
            for i in self.items
            if not (self.work / "outputs" / Path(i).stem / "result.txt").is_file()
        ]


def start_batch(stack: Stack, work: Path, counter_url: str) -> Batch:
    work.mkdir()
    (work / "item.py").write_text(SCRIPT)
    (work / "in").mkdir()
    items = [f"item-{n:02d}.txt" for n in range(ITEMS)]
    for name in items:
        (work / "in" / name).write_text(f"{name} {time.time_ns()}\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rgrid",
            "run",
            "item.py",
            "--batch",
            "in/*.txt",
            "--parallel",
            str(PARALLEL),
            "--no-cache",
            "-e",
            f"CHAOS_COUNTER={counter_url}",
        ],
        cwd=work,
        env=stack.cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Batch(proc, work, items, time.monotonic())


def report(
    scenario: str, counter: Counter, batch: Batch, stack: Stack, code: int
) -> dict[str, object]:
    figures = {
        "scenario": scenario,
        "items": len(batch.items),
        "lost": len(counter.lost(batch.items)),
        "duplicated": len(counter.duplicated(batch.items)),
        "started_runs": sum(counter.started.values()),
        "finished_runs": sum(counter.done.values()),
        "missing_outputs": len(batch.missing_outputs()),
        "exit_code": code,
        "kills": stack.kills,
        "batch_s": round(time.monotonic() - batch.started_at, 1),
    }
    print(json.dumps(figures))
    path = os.environ.get("RGRID_CHAOS_FIGURES")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps(figures) + "\n")
    return figures
