"""The real CLI against a deployment of real processes whose parts the test takes down:
`rgrid run` rides out a Temporal restart, gives up with exit 75 after its budget,
`rgrid watch` reattaches and ends with the script's code and outputs, `rgrid download
batch-…` lays a batch out as the batch run does, and a cancel from the temporal CLI ends
the watching CLI with 130. Runs are counted by a loopback endpoint the script calls."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from ulid import ULID

from rgrid.client.blips import NOTICE
from rgrid.config import Settings
from rgrid.infra.ledger import Ledger
from rgrid.infra.providers.local import LocalProvider
from rgrid.worker.dev import temporal_binary
from tests.conftest import free_port
from tests.integration.outage import SCRIPT, Processes, RunCounter, run_counter

pytestmark = pytest.mark.e2e


@pytest.fixture
def counter() -> Iterator[RunCounter]:
    with run_counter() as counter:
        yield counter


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Processes]:
    port = free_port()
    settings = Settings(
        home=tmp_path / "home",
        temporal_address=f"127.0.0.1:{port}",
        dev_port=port,
        dev_ui_port=free_port(),
        node_class=f"blips-{str(ULID()).lower()}",
        runtime="process",
    )
    procs = Processes(settings, tmp_path)
    await procs.start_temporal()
    await (await Ledger.open(settings.effective_database_url)).close()
    procs.start_control()
    agents = LocalProvider(settings, tmp_path)
    settings.node_dir.mkdir(parents=True, exist_ok=True)
    agents.start_node("blip-1", 2)
    try:
        yield procs
    finally:
        agents.stop_all()
        procs.stop_all()


class Cli:
    """A running `rgrid` command whose stderr lines the test sees as they come."""

    def __init__(self, stack: Processes, cwd: Path, *args: str, **env: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rgrid", *args],
            cwd=cwd,
            env={**stack.env(), "RGRID_RUNTIME": "process", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    async def said(self, predicate: Callable[[str], bool], timeout: float = 300) -> str:
        """The first stderr line that matches, waiting for it."""
        async with asyncio.timeout(timeout):
            while True:
                for line in list(self.lines):
                    if predicate(line):
                        return line
                await asyncio.sleep(0.05)

    async def ended(self, timeout: float = 600) -> tuple[int, str, list[str]]:
        assert self.proc.stdout is not None
        out = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.read), timeout)
        code = await asyncio.to_thread(self.proc.wait)
        await asyncio.to_thread(self._reader.join)
        return code, out, self.lines


def rgrid(stack: Processes, cwd: Path, *args: str, **env: str) -> Cli:
    return Cli(stack, cwd, *args, **env)


def own_lines(lines: list[str], target: str) -> list[str]:
    """rgrid's lines about the outcome: without the id line and the upload report."""
    return [
        line
        for line in lines
        if line.strip()
        and line.strip() != target
        and not line.startswith(("uploaded ", "waiting for a "))
    ]


def work_dir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "job.py").write_text(SCRIPT)
    return work


async def test_rgrid_run_rides_out_a_temporal_restart_and_finishes_with_its_outputs(
    stack: Processes, counter: RunCounter, tmp_path: Path
) -> None:
    work = work_dir(tmp_path)
    cli = rgrid(stack, work, "run", "job.py", counter.url, "one", "5")
    await counter.wait_for("start", "one")
    stack.kill(stack.temporal)
    await cli.said(lambda line: line == NOTICE)  # the outage reached the CLI
    await stack.start_temporal()
    counter.open_gate("one")
    code, _, err = await cli.ended()
    assert code == 5, err
    assert err.count(NOTICE) == 1
    assert not [line for line in err if "error" in line]
    assert (work / "outputs" / "result.txt").read_text() == "done one\n"
    assert counter.count("start", "one") == 1


async def test_rgrid_run_gives_up_with_75_and_rgrid_watch_finishes_the_run(
    stack: Processes, counter: RunCounter, tmp_path: Path
) -> None:
    work = work_dir(tmp_path)
    cli = rgrid(
        stack, work, "run", "job.py", counter.url, "two", "3", RGRID_UNREACHABLE_RETRY_S="2"
    )
    execution_id = await cli.said(lambda line: line.startswith("exec-"))
    await counter.wait_for("start", "two")
    stack.kill(stack.temporal)
    code, _, err = await cli.ended()
    assert code == 75, err
    lines = own_lines(err, execution_id)
    assert len(lines) == 2, err
    assert lines[0] == NOTICE
    assert lines[1].startswith("error: control plane unreachable for 2 s")
    await stack.start_temporal()
    counter.open_gate("two")
    watcher = rgrid(stack, work, "watch", execution_id)
    code, _, err = await watcher.ended()
    assert code == 3, err
    assert (work / "outputs" / "result.txt").read_text() == "done two\n"
    assert counter.count("start", "two") == 1


async def test_rgrid_watch_and_download_lay_a_batch_out_as_the_batch_run_does(
    stack: Processes, counter: RunCounter, tmp_path: Path
) -> None:
    work = work_dir(tmp_path)
    (work / "data").mkdir()
    for name in ("a", "b", "c"):
        (work / "data" / f"{name}.txt").write_text(name)
    started = rgrid(stack, work, "run", "job.py", counter.url, "--batch", "data/*.txt", "-d")
    code, out, err = await started.ended()
    assert code == 0, err
    batch_id = out.strip()
    for name in ("a", "b", "c"):
        counter.open_gate(f"{name}.txt")
    code, _, err = await rgrid(stack, work, "watch", batch_id).ended()
    assert code == 0, err
    layout = sorted(p.relative_to(work / "outputs").as_posix() for p in work.glob("outputs/**/*.*"))
    assert layout == ["a/result.txt", "b/result.txt", "c/result.txt"]
    again = tmp_path / "again"
    again.mkdir()
    code, _, err = await rgrid(stack, again, "download", batch_id).ended()
    assert code == 0, err
    assert (again / "outputs" / "b" / "result.txt").read_text() == "done b.txt\n"
    assert sum(counter.count("start", f"{n}.txt") for n in ("a", "b", "c")) == 3


def temporal_cancel(stack: Processes, workflow_id: str) -> None:
    subprocess.run(
        [
            temporal_binary(),
            "workflow",
            "cancel",
            "--workflow-id",
            workflow_id,
            "--address",
            stack.settings.effective_temporal_address,
        ],
        check=True,
        capture_output=True,
    )


async def test_a_temporal_cli_cancel_of_a_queued_run_ends_the_watching_cli_with_130(
    stack: Processes, tmp_path: Path
) -> None:
    work = work_dir(tmp_path)
    cli = rgrid(stack, work, "run", "job.py", "http://127.0.0.1:9", RGRID_NODE_CLASS="ghost")
    execution_id = await cli.said(lambda line: line.startswith("exec-"))
    # Honest waiting: the CLI says why it waits before anything else happens.
    waiting = await cli.said(lambda line: line.startswith("waiting for a 'ghost' node"))
    assert "none is polling" in waiting
    assert "ahead of it (estimate)" in waiting
    temporal_cancel(stack, execution_id)
    code, _, err = await cli.ended()
    assert code == 130, err
    (line,) = own_lines(err, execution_id)
    assert line.startswith("cancelled"), err


async def test_a_temporal_cli_cancel_of_a_batch_ends_the_watching_cli_with_130(
    stack: Processes, tmp_path: Path
) -> None:
    work = work_dir(tmp_path)
    (work / "data").mkdir()
    for name in ("a", "b", "c"):
        (work / "data" / f"{name}.txt").write_text(name)
    cli = rgrid(
        stack,
        work,
        "run",
        "job.py",
        "http://127.0.0.1:9",
        "--batch",
        "data/*.txt",
        RGRID_NODE_CLASS="ghost",
    )
    first = await cli.said(lambda line: line.startswith("batch-"))
    batch_id = first.split(":")[0]
    temporal_cancel(stack, batch_id)
    code, _, err = await cli.ended()
    assert code == 130, err
    # The batch's own lines: its start, then one saying it was cancelled; no error.
    assert [line for line in err if line.startswith(batch_id) and line != first] == [
        next(line for line in err if line.startswith(f"{batch_id}: cancelled"))
    ]
    assert not [line for line in err if line.startswith("error")], err
    code, out, _ = await rgrid(stack, work, "status", batch_id, "--json").ended()
    assert json.loads(out)["cancelled"] is True
