"""No script runs twice because the control plane was away: a run whose Temporal server or
control worker is killed -9 mid-run, and stays away past the lease's expiry, finishes on
its first node with its first run's result. Real processes throughout: a dev server on a
file database, a control worker process, an agent process; runs are counted by a
loopback endpoint the script calls."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from ulid import ULID

from rgrid.client import submit
from rgrid.client.session import Session
from rgrid.config import Settings
from rgrid.infra.ledger import Ledger
from rgrid.infra.providers.local import LocalProvider
from rgrid.infra.temporal import keyring_of
from rgrid.models.execution import ExecutionStatus, Phase
from rgrid.models.node import ClaimNodeInput
from rgrid.worker.agent import REAP_EVERY_S
from tests.conftest import free_port
from tests.integration.conftest import record_history
from tests.integration.outage import SCRIPT, Processes, RunCounter, run_counter

pytestmark = pytest.mark.integration


@pytest.fixture
def counter() -> AsyncIterator[RunCounter]:
    with run_counter() as counter:
        yield counter  # type: ignore[misc]


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[Processes, LocalProvider]]:
    port = free_port()
    settings = Settings(
        home=tmp_path / "home",
        temporal_address=f"127.0.0.1:{port}",
        dev_port=port,
        dev_ui_port=free_port(),
        node_class=f"outage-{str(ULID()).lower()}",
        heartbeat_timeout_s=3,
        lease_ttl_s=2,  # the renewal term; the claim's own term is the default's
        runtime="process",
    )
    procs = Processes(settings, tmp_path)
    await procs.start_temporal()
    await (await Ledger.open(settings.effective_database_url)).close()  # schema first
    procs.start_control()
    agents = LocalProvider(settings, tmp_path)
    settings.node_dir.mkdir(parents=True, exist_ok=True)
    agents.start_node("only-1", 1)
    try:
        yield procs, agents
    finally:
        agents.stop_all()
        procs.stop_all()


async def start_run(
    settings: Settings, tmp_path: Path, url: str
) -> WorkflowHandle[object, ExecutionStatus]:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    session = Session(settings)
    request = submit.RunRequest(script=script, args=[url, "one"])
    spec, _ = await submit.prepare(session, request, tmp_path)
    return await submit.start(session, spec)


async def result_through_outages(
    handle: WorkflowHandle[object, ExecutionStatus],
) -> ExecutionStatus:
    """The final status, asking again while the server is unreachable."""
    async with asyncio.timeout(600):
        while True:
            with contextlib.suppress(RPCError):
                return await handle.result()
            await asyncio.sleep(0.5)


def outlast_the_lease(settings: Settings) -> float:
    """How long an outage must last for the agent's reaper to have seen the lease expire:
    its claim's term, or the agent's renewal term, whichever is longer."""
    return max(settings.lease_ttl_s, ClaimNodeInput(execution_id="", attempt=1).lease_ttl_s) + (
        2 * REAP_EVERY_S
    )


async def test_a_script_that_ends_while_temporal_is_down_is_not_run_again(
    stack: tuple[Processes, LocalProvider], counter: RunCounter, tmp_path: Path
) -> None:
    procs, _ = stack
    handle = await start_run(procs.settings, tmp_path, counter.url)
    await counter.wait_for("start", "one")
    procs.kill(procs.temporal)
    counter.open_gate("one")
    await counter.wait_for("end", "one")  # the script ended while Temporal was away
    await asyncio.sleep(outlast_the_lease(procs.settings))
    await procs.start_temporal()
    status = await result_through_outages(handle)
    assert status.phase is Phase.SUCCEEDED
    assert counter.count("start", "one") == 1
    assert status.attempts == 1
    assert [o.path for o in status.outputs] == ["result.txt"]
    await record_history(handle, "temporal_restarted_mid_run", keyring_of(procs.settings))


async def test_a_script_that_ends_while_the_control_worker_is_dead_is_not_run_again(
    stack: tuple[Processes, LocalProvider], counter: RunCounter, tmp_path: Path
) -> None:
    procs, _ = stack
    handle = await start_run(procs.settings, tmp_path, counter.url)
    await counter.wait_for("start", "one")
    procs.kill(procs.control)
    counter.open_gate("one")
    await counter.wait_for("end", "one")
    await asyncio.sleep(outlast_the_lease(procs.settings))
    procs.start_control()
    status = await result_through_outages(handle)
    assert status.phase is Phase.SUCCEEDED
    assert counter.count("start", "one") == 1
    assert status.attempts == 1
    assert [o.path for o in status.outputs] == ["result.txt"]


async def test_a_script_still_running_when_temporal_returns_is_re_attached_not_rerun(
    stack: tuple[Processes, LocalProvider], counter: RunCounter, tmp_path: Path
) -> None:
    procs, _ = stack
    handle = await start_run(procs.settings, tmp_path, counter.url)
    await counter.wait_for("start", "one")
    procs.kill(procs.temporal)
    # Past the heartbeat timeout and the lease: the server times the attempt out on return.
    await asyncio.sleep(outlast_the_lease(procs.settings))
    await procs.start_temporal()
    await asyncio.sleep(procs.settings.heartbeat_timeout_s * 2)  # the retry has attached
    counter.open_gate("one")
    status = await result_through_outages(handle)
    assert status.phase is Phase.SUCCEEDED
    assert counter.count("start", "one") == 1
    assert counter.count("end", "one") == 1
    assert status.attempts == 1
    assert [o.path for o in status.outputs] == ["result.txt"]


async def test_an_agent_cut_off_past_its_heartbeat_timeout_re_attaches_to_its_running_script(
    stack: tuple[Processes, LocalProvider], counter: RunCounter, tmp_path: Path
) -> None:
    procs, agents = stack
    handle = await start_run(procs.settings, tmp_path, counter.url)
    await counter.wait_for("start", "one")
    # The agent freezes (its script runs on): Temporal times the attempt out and sees no
    # heartbeat, exactly what it sees when the agent is cut off by the network.
    os.kill(agents.pid("only-1"), signal.SIGSTOP)
    try:
        await asyncio.sleep(2 * procs.settings.heartbeat_timeout_s)
    finally:
        os.kill(agents.pid("only-1"), signal.SIGCONT)
    counter.open_gate("one")
    status = await result_through_outages(handle)
    assert status.phase is Phase.SUCCEEDED
    assert counter.count("start", "one") == 1
    assert status.attempts == 1
    assert [o.path for o in status.outputs] == ["result.txt"]
    await record_history(handle, "run_step_timed_out_and_re_attached", keyring_of(procs.settings))
