"""The node's activities under temporalio's ActivityEnvironment, on the real process
runtime and real local storage: run_container heartbeats while the script runs, a cancel
kills the script, a lease reaped under a live run ends it with LeaseLost; execute stages,
runs and collects in one step and never runs a script twice when asked again."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from ulid import ULID

from rgrid.activities.leases import LeaseBook
from rgrid.activities.node import NodeActivities, NodeIdentity
from rgrid.errors import Failure
from rgrid.infra.runtime.base import OutputSink, RunOutcome, RunRequest, Runtime
from rgrid.infra.runtime.process import ProcessRuntime
from rgrid.infra.storage.base import cas_key
from rgrid.infra.storage.local import LocalStorage
from rgrid.models.execution import ExecutionSpec, FileRef
from rgrid.models.node import (
    ClaimNodeInput,
    NodeLease,
    ReleaseNodeInput,
    RunContainerInput,
    StageInputsInput,
)

pytestmark = pytest.mark.integration


class Node:
    """One node's activities, a claimed lease and a staged script."""

    def __init__(
        self, tmp_path: Path, lease_ttl_s: int = 120, runtime: Runtime | None = None
    ) -> None:
        self.storage = LocalStorage(tmp_path / "storage")
        self.activities = NodeActivities(
            node=NodeIdentity(node_id="activity-node"),
            book=LeaseBook(1),
            runtime=runtime or ProcessRuntime(cache_dir=tmp_path / "cache"),
            storage=self.storage,
            work_root=tmp_path / "leases",
            lease_ttl_s=lease_ttl_s,
        )
        self.lease_ttl_s = lease_ttl_s
        self.execution_id = f"exec-{str(ULID()).lower()}"
        # A mark in the script's environment names its processes, and no one else's.
        self.marker = f"RGRID_TEST_RUN={self.execution_id}"
        self.beats: list[Any] = []
        self.beat = asyncio.Event()
        self.env = ActivityEnvironment()
        self.env.on_heartbeat = self._on_heartbeat

    def _on_heartbeat(self, *details: Any) -> None:
        self.beats.append(details[0] if details else None)
        self.beat.set()

    async def claim(self, body: str) -> RunContainerInput:
        """A lease for a script that is in storage, not staged yet."""
        data = body.encode()
        script = FileRef(name="job.py", sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        await self.storage.put_bytes(cas_key(script.sha256), data)
        lease: NodeLease = await self.env.run(
            self.activities.claim_node,
            ClaimNodeInput(execution_id=self.execution_id, attempt=1, lease_ttl_s=self.lease_ttl_s),
        )
        key, value = self.marker.split("=")
        spec = ExecutionSpec(script=script, runtime="process", env={key: value}, timeout_s=300)
        return RunContainerInput(lease=lease, execution_id=self.execution_id, spec=spec)

    async def stage(self, body: str) -> RunContainerInput:
        request = await self.claim(body)
        await self.env.run(
            self.activities.stage_inputs,
            StageInputsInput(
                lease=request.lease, execution_id=self.execution_id, script=request.spec.script
            ),
        )
        return request

    def processes(self) -> list[int]:
        """Processes of this test's script still alive on the machine."""
        found = []
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and self.marker.encode() in (proc / "environ").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
        return found


async def test_run_container_heartbeats_its_log_progress_while_the_script_runs(
    tmp_path: Path,
) -> None:
    node = Node(tmp_path)
    request = await node.stage(
        "import time\nfor i in range(4):\n    print('line', i, flush=True)\n    time.sleep(0.4)\n"
    )
    result = await node.env.run(node.activities.run_container, request)
    assert result.exit_code == 0 and result.runtime in ("process", "process-unsandboxed")
    assert node.beats, "no heartbeat while the script ran"
    assert node.beats == sorted(node.beats)  # the log offset only moves forward
    assert node.beats[-1] >= 1  # and it moved: the lines were written as chunks


async def test_cancelling_run_container_kills_the_script(tmp_path: Path) -> None:
    node = Node(tmp_path)
    request = await node.stage("import time\nprint('up', flush=True)\ntime.sleep(300)\n")
    task = asyncio.create_task(node.env.run(node.activities.run_container, request))
    async with asyncio.timeout(60):
        while not node.processes():  # the script is running
            await asyncio.sleep(0.1)
        await node.beat.wait()
    node.env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert node.processes() == []  # killed, not left running on the node


async def test_a_lapsed_lease_under_a_live_run_is_kept_and_a_release_ends_it_with_lease_lost(
    tmp_path: Path,
) -> None:
    # A lease that lapses between renewals while its script runs.
    node = Node(tmp_path, lease_ttl_s=0)
    request = await node.stage("import time\nprint('up', flush=True)\ntime.sleep(300)\n")
    task = asyncio.create_task(node.env.run(node.activities.run_container, request))
    async with asyncio.timeout(60):
        while not node.processes():
            await asyncio.sleep(0.1)
    # The reaper keeps it: nobody renewing may be an outage, and reaping would run it twice.
    assert node.activities.reap_expired() == []
    assert node.processes() != [] and not task.done()
    # Released (the slot taken back), the run ends as LeaseLost and the script is killed.
    await node.env.run(node.activities.release_node, ReleaseNodeInput(lease=request.lease))
    with pytest.raises(ApplicationError) as lost:
        await task
    assert lost.value.type == Failure.LEASE_LOST
    assert request.lease.lease_id in lost.value.message
    assert node.processes() == []


class CountingRuntime:
    """The real process runtime, counting the scripts it really starts (a sandboxed
    script cannot write outside its work dir to count itself)."""

    def __init__(self, inner: ProcessRuntime) -> None:
        self.inner, self.name, self.started = inner, inner.name, 0

    @property
    def isolation(self) -> str:
        return self.inner.isolation

    async def run(self, request: RunRequest, sink: OutputSink) -> RunOutcome:
        self.started += 1
        return await self.inner.run(request, sink)

    async def close(self) -> None:
        await self.inner.close()


def counting_node(tmp_path: Path) -> tuple[Node, CountingRuntime]:
    runtime = CountingRuntime(ProcessRuntime(cache_dir=tmp_path / "cache"))
    return Node(tmp_path, runtime=runtime), runtime


OUT = "open('out.txt', 'w').write('result')\n"


async def test_execute_stages_runs_and_collects_and_a_repeat_ask_runs_nothing_again(
    tmp_path: Path,
) -> None:
    node, runtime = counting_node(tmp_path)
    request = await node.claim(OUT)
    first = await node.env.run(node.activities.execute, request)
    assert first.run.exit_code == 0
    assert [out.path for out in first.outputs.outputs] == ["out.txt"]  # not job.py
    # The answer was lost on its way (Temporal away): asked again, the node answers the
    # same without running the script again, though the lease is released by now.
    again = await node.env.run(node.activities.execute, request)
    assert again == first
    assert runtime.started == 1


async def test_a_second_execute_attempt_re_attaches_to_the_running_script(
    tmp_path: Path,
) -> None:
    # The first attempt timed out while its script ran on: the retry must follow that run,
    # and both collect it as one; many outputs make the two collects overlap.
    node, runtime = counting_node(tmp_path)
    many = "for i in range(300):\n    open(f'out{i:03}.txt', 'w').write('x' * 20000)\n"
    request = await node.claim("import time\ntime.sleep(1.5)\n" + many)
    first = asyncio.create_task(node.env.run(node.activities.execute, request))
    async with asyncio.timeout(60):
        while not node.processes():
            await asyncio.sleep(0.05)
    second = await ActivityEnvironment().run(node.activities.execute, request)
    assert second.run.exit_code == 0
    assert (await first).outputs == second.outputs
    assert runtime.started == 1
    assert [out.path for out in second.outputs.outputs] == [f"out{i:03}.txt" for i in range(300)]


async def test_execute_names_a_missing_input_and_runs_nothing(tmp_path: Path) -> None:
    node, runtime = counting_node(tmp_path)
    request = await node.claim("print('never')\n")
    missing = FileRef(name="data.csv", sha256="0" * 64, size=3)
    request.spec.inputs.append(missing)
    with pytest.raises(ApplicationError) as failed:
        await node.env.run(node.activities.execute, request)
    assert failed.value.non_retryable and failed.value.type == Failure.NOT_FOUND
    assert runtime.started == 0
