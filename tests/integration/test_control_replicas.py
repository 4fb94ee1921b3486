"""`rgrid worker control` as a deployment runs it: two replicas side by side on one
Temporal run one limit watch and one node pool; killing one loses nothing; SIGTERM
drains; the health port says whether a replica works."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from rgrid.names import BATCH_ID_ATTRIBUTE, LIMIT_WATCH_ID, PROJECT_ATTRIBUTE, SCRIPT_ATTRIBUTE
from rgrid.worker.dev import temporal_binary
from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture
async def own_temporal() -> AsyncIterator[WorkflowEnvironment]:
    # A server of its own: these workers poll rgrid's real control queue and singleton ids.
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        search_attributes=[PROJECT_ATTRIBUTE, SCRIPT_ATTRIBUTE, BATCH_ID_ATTRIBUTE],
        ui=False,
    )
    async with env:
        yield env


def replica(client: Client, home: Path, health_port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RGRID_")}
    env.update(
        RGRID_HOME=str(home),
        RGRID_CONFIG=os.devnull,
        RGRID_TEMPORAL_ADDRESS=client.service_client.config.target_host,
        RGRID_DATABASE_URL=f"sqlite+aiosqlite:///{home / 'ledger.db'}",
        RGRID_STORAGE_URL=(home / "storage").as_uri(),
        RGRID_LOCAL_NODES="0",  # a node pool (pool-local-local), started by each replica
        RGRID_LIMIT_CHECK_S="1",
    )
    log = (home / f"control-{health_port}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "rgrid", "worker", "control", "--health-port", str(health_port)],
        env=env,
        stdout=log,
        stderr=log,
    )


def health(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


async def until(condition, timeout_s: float = 300) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.2)


async def running(client: Client, workflow_type: str) -> list[str]:
    query = f"WorkflowType = '{workflow_type}' AND ExecutionStatus = 'Running'"
    return [w.id async for w in client.list_workflows(query)]


async def checks_done(client: Client) -> int:
    history = await client.get_workflow_handle(LIMIT_WATCH_ID).fetch_history()
    completed = EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
    return sum(1 for event in history.events if event.event_type == completed)


async def test_two_replicas_run_one_of_each_singleton_and_survive_one_killed(
    own_temporal: WorkflowEnvironment, tmp_path: Path
) -> None:
    client = own_temporal.client
    ports = [free_port(), free_port()]
    workers = [replica(client, tmp_path, port) for port in ports]
    try:

        async def both_healthy() -> bool:
            return all(health(port) == 200 for port in ports)

        await until(both_healthy)
        assert await running(client, "LimitWatchWorkflow") == [LIMIT_WATCH_ID]
        assert await running(client, "NodePoolWorkflow") == ["pool-local-local"]

        workers[0].kill()
        workers[0].wait()
        after_kill = await checks_done(client)

        async def watch_goes_on() -> bool:
            return await checks_done(client) >= after_kill + 2

        await until(watch_goes_on)  # the survivor runs the watch now
        assert await running(client, "LimitWatchWorkflow") == [LIMIT_WATCH_ID]
        assert health(ports[0]) is None and health(ports[1]) == 200

        workers[1].send_signal(signal.SIGTERM)
        assert workers[1].wait(timeout=120) == 0
        log = (tmp_path / f"control-{ports[1]}.log").read_text()
        assert '"control_draining"' in log and '"control_stopped"' in log
        assert "Traceback" not in log
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
