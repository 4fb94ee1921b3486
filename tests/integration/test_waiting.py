"""Honest waiting: a queued run is explained while it waits: runs queued before it, nodes
of its class polling, and, when none is, what the embedded stack's supervisor recorded
about its agents. Against the real dev server, with a real agent where one is needed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from rgrid.client.session import Session
from rgrid.client.waiting import POLLER_FRESH_S, WaitReport, wait_report
from rgrid.client.watch import wait_for_result
from rgrid.config import Settings
from rgrid.infra.ledger import Ledger
from rgrid.infra.storage.local import LocalStorage
from rgrid.models.execution import ExecutionStatus, Phase
from rgrid.worker.control import build_control_worker
from tests.integration.conftest import CODEC_KEYS, agent, start_dev_server
from tests.integration.test_execution_workflow import start, wait_for_phase

pytestmark = pytest.mark.integration


# A dev server and control worker of this module's own: what these tests read (pollers,
# queued runs) must not depend on the session's server, which other modules restart.
@pytest.fixture(scope="module")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    async with await start_dev_server() as env:
        yield env


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("waiting-home")


@pytest.fixture(scope="module")
async def control(temporal_env: WorkflowEnvironment, shared_home: Path) -> AsyncIterator[Ledger]:
    ledger = await Ledger.open(f"sqlite+aiosqlite:///{shared_home / 'ledger.db'}")
    settings = Settings(home=shared_home, codec_key=CODEC_KEYS.export())
    async with build_control_worker(
        temporal_env.client, ledger, LocalStorage(shared_home / "storage"), settings
    ):
        yield ledger
    await ledger.close()


async def next_report(reports: list[WaitReport], after: int = 0) -> WaitReport:
    async with asyncio.timeout(60):
        while len(reports) <= after:
            await asyncio.sleep(0.05)
    return reports[after]


async def test_a_run_no_node_takes_is_explained_while_it_waits_and_after_an_agent_exits(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    handle = await start(settings, tmp_path, "print('never runs')\n")  # no node of its class
    session = Session(settings)
    reports: list[WaitReport] = []
    watching = asyncio.create_task(wait_for_result(session, handle.id, on_wait=reports.append))
    first = await next_report(reports)
    assert first.node_class == settings.node_class
    assert first.polling == 0
    assert first.why is None
    assert "none is polling" in first.line()
    # What the supervisor records when it gave up on an agent.
    settings.dev_dir.mkdir(parents=True, exist_ok=True)
    log = settings.dev_dir / "agent-local-1.log"
    (settings.dev_dir / "children.json").write_text(
        json.dumps(
            {
                "children": [
                    {
                        "name": "agent-local-1",
                        "kind": "agent",
                        "state": "gave-up",
                        "ready": False,
                        "last_exit_reason": "AssertionError: no docker socket",
                        "log": str(log),
                    }
                ]
            }
        )
    )
    seen = len(reports)
    later = await next_report(reports, seen)
    assert later.why is not None
    assert "AssertionError: no docker socket" in later.why
    assert str(log) in later.line()
    await handle.cancel()
    final = await watching
    assert final.phase is Phase.CANCELLED


async def test_queue_position_counts_the_runs_queued_before_it(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    older = await start(settings, tmp_path, "print('first')\n")
    newer = await start(settings, tmp_path, "print('second')\n")
    session = Session(settings)
    try:
        first = await wait_report(session, await wait_for_phase(older, Phase.QUEUED))
        second = await wait_report(session, await wait_for_phase(newer, Phase.QUEUED))
        assert second.ahead == first.ahead + 1
    finally:
        await older.cancel()
        await newer.cancel()
        await session.close()


async def test_a_node_with_a_free_slot_counts_as_polling_and_a_busy_one_does_not(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    session = Session(settings)
    queued = ExecutionStatus(execution_id="exec-probe", node_class=settings.node_class)
    async with agent(client, settings, "wait-node", slots=1):
        async with asyncio.timeout(60):
            while (await wait_report(session, queued)).polling != 1:
                await asyncio.sleep(0.2)
        busy = await start(settings, tmp_path, "import time; time.sleep(600)\n")
        await wait_for_phase(busy, Phase.RUNNING)
        # Its last poll ages out; with no free slot it polls no more.
        async with asyncio.timeout(POLLER_FRESH_S + 120):
            while (report := await wait_report(session, queued)).polling != 0:
                await asyncio.sleep(0.5)
        assert "none is polling" in report.line()
        await busy.cancel()
    await session.close()
