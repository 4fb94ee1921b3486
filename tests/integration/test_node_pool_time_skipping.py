"""The billing-hour decisions at their real scale (a 3600 s hour, a 300 s margin, a 30 s
tick) on Temporal's time-skipping test server. That server is a binary the SDK downloads
on first use; where it cannot (no internet), these tests are skipped, and the same
decisions are covered in seconds on the real dev server (test_node_pool.py) and as pure
functions (tests/unit/test_pool_policy.py)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from ulid import ULID

from rgrid.config import Settings
from rgrid.config_parts import HetznerConfig
from rgrid.infra.ledger import Ledger
from rgrid.infra.providers.hetzner import HetznerProvider
from rgrid.infra.storage.local import LocalStorage
from rgrid.models.pool import Demand, NodeState, PoolInput, PoolStatus
from rgrid.worker.control import build_control_worker
from tests.standins.hetzner import serve

pytestmark = pytest.mark.integration


@pytest.fixture
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    try:
        async with asyncio.timeout(60):
            env = await WorkflowEnvironment.start_time_skipping(
                data_converter=pydantic_data_converter
            )
    except Exception as exc:  # the download or the start failed
        pytest.skip(f"the time-skipping test server cannot start here: {str(exc)[:160]}")
    async with env:
        yield env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_idle_node_lives_until_five_minutes_before_its_next_hour(
    skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    port = free_port()
    runner, api = await serve(port, tmp_path / "api", token="t")
    settings = Settings(
        home=tmp_path,
        temporal_address=skipping_env.client.service_client.config.target_host,
        storage_url=(tmp_path / "storage").as_uri(),
        provider="hetzner",
        hcloud_token="t",
        hcloud_endpoint=f"http://127.0.0.1:{port}/v1",
        node_class=f"ts-{str(ULID()).lower()}",
    )
    ledger = await Ledger.open(f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}")
    queue = f"control-{ULID()}"
    worker = build_control_worker(
        skipping_env.client,
        ledger,
        LocalStorage(tmp_path / "storage"),
        settings,
        task_queue=queue,
        provider=HetznerProvider(HetznerConfig.of(settings)),
    )
    try:
        async with worker:
            pool = await skipping_env.client.start_workflow(
                "NodePoolWorkflow",
                PoolInput(config=settings.node_class_config()),
                id=settings.pool_id or "",
                task_queue=queue,
                start_signal="demand",
                start_signal_args=[Demand(execution_id="exec-none")],
            )
            await _wait_ready(pool)
            await skipping_env.sleep(timedelta(minutes=50))
            assert len(api.servers) == 1  # idle, but the hour is paid for
            await skipping_env.sleep(timedelta(minutes=6))
            assert api.servers == {}  # gone before the second hour
            (row,) = await ledger.nodes(include_deleted=True)
            assert row.state is NodeState.DELETED
            await pool.terminate("test over")
    finally:
        await runner.cleanup()
        await ledger.close()


async def _wait_ready(pool: WorkflowHandle[Any, Any]) -> None:
    async with asyncio.timeout(60):
        while True:
            status = await pool.query("status", result_type=PoolStatus)
            if any(n.state is NodeState.READY for n in status.nodes):
                return
            await asyncio.sleep(0.2)
