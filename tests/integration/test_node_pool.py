"""NodePoolWorkflow end to end on the Hetzner API stand-in: the real hcloud client, the
real cloud-init user data (its files written, its agent unit started as a local process),
real agents, a real Temporal dev server. Intervals are seconds instead of minutes; the
billing "hour" is shortened the same way."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import textwrap
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hcloud import Client as HcloudClient
from hcloud.images import Image
from hcloud.server_types import ServerType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from ulid import ULID

from rgrid.client import batch, submit
from rgrid.client import nodes as nodes_client
from rgrid.client.session import Session
from rgrid.config import Settings
from rgrid.config_parts import HetznerConfig
from rgrid.errors import NotFoundError
from rgrid.infra.ledger import Ledger
from rgrid.infra.providers import node_labels
from rgrid.infra.providers.cloud_init import agent_unit
from rgrid.infra.providers.hetzner import HetznerProvider
from rgrid.infra.providers.local import LocalProvider
from rgrid.infra.storage.local import LocalStorage
from rgrid.models.batch import BatchInput, BatchProgress
from rgrid.models.execution import ExecutionStatus, Phase
from rgrid.models.pool import NodeRecord, NodeState, PoolInput, PoolStatus
from rgrid.worker.control import build_control_worker
from tests.integration.conftest import assert_replays, record_history
from tests.standins.hetzner import HetznerStandIn, serve

pytestmark = pytest.mark.integration

TOKEN = "standin-token"

# Sleeps for the seconds in its input file (or its first argument).
SCRIPT = """
    import sys, time
    text = open(sys.argv[-1]).read().strip() if sys.argv[1:] else "1"
    time.sleep(float(text))
    open("result.txt", "w").write(text)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PoolStack:
    client: Client
    settings: Settings
    ledger: Ledger
    queue: str
    tmp_path: Path
    standin: HetznerStandIn = field(default=None)  # type: ignore[assignment]  # None: local

    @property
    def pool_id(self) -> str:
        assert self.settings.pool_id is not None
        return self.settings.pool_id

    def hcloud(self) -> HcloudClient:
        return HcloudClient(token=TOKEN, api_endpoint=self.settings.hcloud_endpoint)

    async def servers(self) -> list[dict[str, Any]]:
        return [
            s.data
            for s in self.standin.servers.values()
            if s.data["labels"].get("rgrid-class") == self.settings.node_class
        ]

    async def nodes(self) -> list[NodeRecord]:
        return [
            n
            for n in await self.ledger.nodes(include_deleted=True)
            if n.node_class == self.settings.node_class
        ]

    async def pool_status(self) -> PoolStatus:
        handle = self.client.get_workflow_handle(self.pool_id)
        return await handle.query("status", result_type=PoolStatus)

    async def start_execution(
        self, body: str = SCRIPT, args: list[str] | None = None
    ) -> WorkflowHandle[Any, ExecutionStatus]:
        script = self.tmp_path / f"job-{ULID()}.py"
        script.write_text(textwrap.dedent(body) + "# rgrid: no-cache\n")
        session = Session(self.settings)
        spec, _ = await submit.prepare(
            session, submit.RunRequest(script=script, args=args or []), self.tmp_path
        )
        return await self.client.start_workflow(
            "ExecutionWorkflow",
            spec,
            id=f"exec-{ULID()}",
            task_queue=self.queue,
            result_type=ExecutionStatus,
        )

    async def start_batch(
        self, durations: list[str], parallel: int
    ) -> WorkflowHandle[Any, BatchProgress]:
        work = self.tmp_path / f"batch-{ULID()}"
        (work / "data").mkdir(parents=True)
        (work / "job.py").write_text(textwrap.dedent(SCRIPT) + "# rgrid: no-cache\n")
        for index, text in enumerate(durations):
            (work / "data" / f"item{index:02d}.txt").write_text(text)
        session = Session(self.settings)
        prepared = await batch.prepare(
            session,
            submit.RunRequest(script=work / "job.py"),
            ["data/*.txt"],
            parallel,
            False,
            work,
        )
        return await self.client.start_workflow(
            "BatchWorkflow",
            BatchInput(spec=prepared.spec),
            id=prepared.batch_id,
            task_queue=self.queue,
            result_type=BatchProgress,
        )


@pytest.fixture
async def pool_stack(
    client: Client, settings: Settings, tmp_path: Path
) -> AsyncIterator[PoolStack]:
    port = free_port()
    runner, standin = await serve(port, tmp_path / "standin", token=TOKEN)
    pool_settings = settings.model_copy(
        update={
            "provider": "hetzner",
            "hcloud_token": TOKEN,
            "hcloud_endpoint": f"http://127.0.0.1:{port}/v1",
            "node_choices": "cx22@nbg1,cx32@fsn1",
            "node_slots": 1,
            "max_nodes": 3,
            "pool_tick_s": 1,
            "node_heartbeat_s": 2,
            "node_dead_after_s": 4,
            "node_billing_period_s": 30,
            "retire_margin_s": 8,
            "queue_timeout_s": 120,
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'pool-ledger.db'}",
        }
    )
    ledger = await Ledger.open(pool_settings.effective_database_url)
    queue = f"control-{ULID()}"
    worker = build_control_worker(
        client,
        ledger,
        LocalStorage(Path(pool_settings.effective_storage_url.removeprefix("file://"))),
        pool_settings,
        task_queue=queue,
        provider=HetznerProvider(HetznerConfig.of(pool_settings)),
    )
    stack = PoolStack(client, pool_settings, ledger, queue, tmp_path, standin)
    try:
        async with worker:
            yield stack
            with contextlib.suppress(Exception):
                await client.get_workflow_handle(stack.pool_id).terminate("test over")
    finally:
        await runner.cleanup()  # kills every server's agent
        await ledger.close()


async def eventually(check: Any, timeout: float = 60, every: float = 0.3) -> Any:
    """Poll an async check until it returns something truthy."""
    async with asyncio.timeout(timeout):
        while True:
            value = await check()
            if value:
                return value
            await asyncio.sleep(every)


async def test_a_batch_scales_from_zero_to_n_nodes_and_back_to_zero(
    pool_stack: PoolStack,
) -> None:
    assert await pool_stack.servers() == []
    handle = await pool_stack.start_batch(["4"] * 5, parallel=5)
    result = asyncio.ensure_future(handle.result())
    peak = 0
    while not result.done():
        peak = max(peak, len(await pool_stack.servers()))
        await asyncio.sleep(0.3)
    progress = await result
    assert progress.succeeded == 5 and progress.failed == 0
    assert peak == 3  # max_nodes: five waiting items, one slot per node
    # Idle nodes go before their next (30 s) billing period; none is left billing.
    await eventually(lambda: _none_left(pool_stack), timeout=45)
    nodes = await pool_stack.nodes()
    assert len(nodes) == 3 and all(n.state is NodeState.DELETED for n in nodes)
    for node in nodes:
        assert node.server_type == "cx22" and node.location == "nbg1"
        assert node.hourly_price_microns == 6000 and node.currency == "EUR"
        assert node.caused_by == handle.id
        assert node.ready_at is not None and node.deleted_at is not None
    # Each idle node was retired in the margin before a next billing period (30 s, 8 s).
    decided = await retirements(pool_stack)
    assert sorted(decided) == sorted(n.node_id for n in nodes)
    assert all(in_retire_window(n, decided[n.node_id], 30, 8) for n in nodes), decided
    await record_history(pool_stack.client.get_workflow_handle(pool_stack.pool_id), "node_pool")


async def retirements(stack: PoolStack) -> dict[str, datetime]:
    """When the pool decided to retire each node, by its own clock: the start of the
    workflow task that first drained or destroyed it, in every run of the pool. The
    decision, not the deletion's latency, is what a loaded machine must not move."""
    decided: dict[str, datetime] = {}
    async for run in stack.client.list_workflows(f'WorkflowId = "{stack.pool_id}"'):
        handle = stack.client.get_workflow_handle(stack.pool_id, run_id=run.run_id)
        task_started = None
        for event in (await handle.fetch_history()).events:
            if event.HasField("workflow_task_started_event_attributes"):
                task_started = event.event_time.ToDatetime(tzinfo=UTC)
            if not event.HasField("activity_task_scheduled_event_attributes"):
                continue
            scheduled = event.activity_task_scheduled_event_attributes
            if scheduled.activity_type.name not in ("drain_node", "destroy_node"):
                continue
            # Payloads are encrypted (the codec): decode them as the workers do.
            text = repr(await stack.client.data_converter.decode(scheduled.input.payloads))
            for node in await stack.nodes():
                if node.node_id in text and task_started is not None:
                    decided[node.node_id] = min(
                        decided.get(node.node_id, task_started), task_started
                    )
    return decided


def in_retire_window(node: NodeRecord, decided: datetime, period_s: int, margin_s: int) -> bool:
    """Decided in the last `margin_s` of one of the node's billing periods (a second of
    slack for the pool's view of its creation time)."""
    elapsed = (decided - node.created_at).total_seconds()
    return elapsed % period_s >= period_s - margin_s - 1


async def _none_left(stack: PoolStack) -> bool:
    return not await stack.servers()


async def test_a_node_is_reused_within_its_hour_and_deleted_before_the_next(
    pool_stack: PoolStack,
) -> None:
    first_handle = await pool_stack.start_execution()
    first = await first_handle.result()
    second = await (await pool_stack.start_execution()).result()
    assert first.phase is Phase.SUCCEEDED and second.phase is Phase.SUCCEEDED
    assert second.node_id == first.node_id  # the node still had paid time: reused
    assert len(await pool_stack.servers()) == 1
    await eventually(lambda: _none_left(pool_stack), timeout=45)
    (node,) = await pool_stack.nodes()
    assert node.deleted_at is not None
    # Retired in the margin before a next period (30 s, margin 8 s), not earlier: the
    # pool's own decision, whatever the machine's load did to the deletion's latency.
    decided = (await retirements(pool_stack))[node.node_id]
    assert decided > second.finished_at  # type: ignore[operator]  # idle only after its reuse
    assert in_retire_window(node, decided, 30, 8), (node.created_at, decided)
    await record_history(first_handle, "execution_with_pool")
    await assert_replays(first_handle)


async def test_a_labelled_server_the_pool_does_not_know_is_deleted(
    pool_stack: PoolStack,
) -> None:
    hcloud = pool_stack.hcloud()
    cls = pool_stack.settings.node_class

    def create(name: str, labels: dict[str, str]) -> int | None:
        # In a thread: the stand-in answers on this test's event loop.
        return hcloud.servers.create(
            name=name,
            server_type=ServerType(name="cx22"),
            image=Image(name="ubuntu-24.04"),
            labels=labels,
        ).server.id

    orphan = await asyncio.to_thread(create, f"{cls}-orphan", node_labels(cls, f"{cls}-orphan"))
    stranger = await asyncio.to_thread(create, f"{cls}-not-ours", {"team": "web"})
    await pool_stack.client.start_workflow(
        "NodePoolWorkflow",
        PoolInput(config=pool_stack.settings.node_class_config()),
        id=pool_stack.pool_id,
        task_queue=pool_stack.queue,
    )
    await eventually(lambda: _gone(pool_stack, orphan), timeout=20)
    assert stranger in pool_stack.standin.servers  # only rgrid's labels count
    (row,) = await pool_stack.nodes()
    assert row.node_id == f"{cls}-orphan" and row.state is NodeState.DELETED


async def _gone(stack: PoolStack, server_id: int | None) -> bool:
    return server_id not in stack.standin.servers


async def test_a_node_killed_mid_run_has_its_run_completed_elsewhere(
    pool_stack: PoolStack,
) -> None:
    handle = await pool_stack.start_execution(args=["6"], body=SCRIPT.replace(
        'open(sys.argv[-1]).read().strip() if sys.argv[1:] else "1"', "sys.argv[-1]"))  # fmt: skip
    status = await eventually(lambda: _running(handle), timeout=60)
    victim = status.node_id
    (server,) = [s for s in await pool_stack.servers() if s["name"] == victim]
    await asyncio.to_thread(
        _post, pool_stack.settings.hcloud_endpoint, f"/_standin/servers/{server['id']}/crash"
    )
    result = await handle.result()
    assert result.phase is Phase.SUCCEEDED
    assert result.node_id != victim and result.attempts == 2
    # Missed pings AND the API's "off": declared dead, deleted.
    await eventually(lambda: _gone(pool_stack, server["id"]), timeout=30)
    rows = {n.node_id: n for n in await pool_stack.nodes()}
    assert rows[victim].state is NodeState.DELETED


async def _running(handle: WorkflowHandle[Any, ExecutionStatus]) -> ExecutionStatus | None:
    status = await handle.query("status", result_type=ExecutionStatus)
    return status if status.phase is Phase.RUNNING else None


def _post(endpoint: str, path: str, body: dict[str, Any] | None = None) -> None:
    import requests

    base = endpoint.removesuffix("/v1")
    requests.post(base + path, json=body or {}, timeout=10).raise_for_status()


async def test_a_quota_error_fails_the_waiting_run_with_a_clear_message(
    pool_stack: PoolStack,
) -> None:
    pool_stack.standin.server_limit = 0
    handle = await pool_stack.start_execution()
    started = time.monotonic()
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert time.monotonic() - started < 30  # not the 120 s queue timeout
    message = str(failure.value.cause)
    assert "resource_limit_exceeded" in message
    assert "raise your Hetzner limit or lower max_nodes" in message
    status = await pool_stack.pool_status()
    assert status.last_error is not None and "limit" in status.last_error
    await record_history(handle, "no_capacity")
    await assert_replays(handle)


async def test_capacity_missing_in_the_first_choice_falls_back_to_the_next(
    pool_stack: PoolStack,
) -> None:
    await asyncio.to_thread(
        _post,
        pool_stack.settings.hcloud_endpoint,
        "/_standin/faults",
        {
            "code": "resource_unavailable",
            "message": "server type cx22 unavailable in nbg1",
            "server_type": "cx22",
            "times": 5,
        },
    )
    result = await (await pool_stack.start_execution()).result()
    assert result.phase is Phase.SUCCEEDED
    (node,) = await pool_stack.nodes()
    assert (node.server_type, node.location) == ("cx32", "fsn1")
    assert node.hourly_price_microns == 11300  # the API's price for that type there


async def test_the_agent_gets_no_database_url_and_its_node_scoped_config(
    pool_stack: PoolStack,
) -> None:
    result = await (await pool_stack.start_execution()).result()
    (server,) = await pool_stack.servers()
    root = pool_stack.standin.servers[server["id"]].root
    env = (root / "etc/rgrid/agent.env").read_text()
    assert f'RGRID_NODE_CLASS="{pool_stack.settings.node_class}"' in env
    assert "RGRID_TEMPORAL_ADDRESS" in env and "RGRID_STORAGE_URL" in env
    assert "DATABASE" not in env
    assert 'RGRID_LOCAL_HOURLY_PRICE_MICRONS="6000"' in env  # the price its leases carry
    # The unit rgrid ships, its ExecStart run with this node's id and slots from agent.env.
    unit = (root / "etc/systemd/system/rgrid-agent.service").read_text()
    assert unit == agent_unit()
    started = pool_stack.standin.servers[server["id"]].units["rgrid-agent.service"]
    assert started.endswith(f" worker agent --node-id {result.node_id} --slots 1")


async def test_the_pool_keeps_its_nodes_across_continue_as_new(pool_stack: PoolStack) -> None:
    pool_stack.settings = pool_stack.settings.model_copy(
        update={"node_billing_period_s": 600, "retire_margin_s": 5}
    )
    config = pool_stack.settings.node_class_config().model_copy(update={"max_history": 40})
    pool = await pool_stack.client.start_workflow(
        "NodePoolWorkflow", PoolInput(config=config), id=pool_stack.pool_id,
        task_queue=pool_stack.queue,
    )  # fmt: skip
    first = await (await pool_stack.start_execution()).result()
    first_run = (await pool.describe()).run_id
    await eventually(lambda: _new_run(pool_stack, first_run), timeout=60)
    second = await (await pool_stack.start_execution()).result()
    assert second.node_id == first.node_id  # still known: not an orphan, not a new node
    assert [s["name"] for s in await pool_stack.servers()] == [first.node_id]


async def _new_run(stack: PoolStack, run_id: str | None) -> bool:
    handle = stack.client.get_workflow_handle(stack.pool_id)
    return (await handle.describe()).run_id != run_id


async def test_rgrid_nodes_shows_slots_in_use_and_a_drained_node_goes_when_idle(
    pool_stack: PoolStack,
) -> None:
    pool_stack.settings = pool_stack.settings.model_copy(update={"node_billing_period_s": 600})
    session = Session(pool_stack.settings)
    handle = await pool_stack.start_execution(args=["4"], body=SCRIPT.replace(
        'open(sys.argv[-1]).read().strip() if sys.argv[1:] else "1"', "sys.argv[-1]"))  # fmt: skip
    running = await eventually(lambda: _running(handle), timeout=60)
    views = await eventually(lambda: _busy_views(session), timeout=10)
    assert [(v.node.node_id, v.slots_used, v.billed_hours) for v in views] == [
        (running.node_id, 1, 1)
    ]
    await nodes_client.signal_pool(session, running.node_id or "", "drain")
    await eventually(lambda: _state_is(pool_stack, NodeState.DRAINING), timeout=10)
    assert (await handle.result()).phase is Phase.SUCCEEDED  # its run ends first
    await eventually(lambda: _none_left(pool_stack), timeout=20)  # then it goes, mid-hour
    with pytest.raises(NotFoundError):
        await nodes_client.signal_pool(session, "no-such-node", "destroy")
    await session.close()


async def _busy_views(session: Session) -> list[nodes_client.NodeView] | None:
    views = await nodes_client.list_nodes(session)
    return views if views and views[0].slots_used else None


async def _state_is(stack: PoolStack, state: NodeState) -> bool:
    status = await stack.pool_status()
    return bool(status.nodes) and status.nodes[0].state is state


async def test_a_destroyed_node_is_deleted_and_its_run_completes_elsewhere(
    pool_stack: PoolStack,
) -> None:
    session = Session(pool_stack.settings)
    handle = await pool_stack.start_execution(args=["5"], body=SCRIPT.replace(
        'open(sys.argv[-1]).read().strip() if sys.argv[1:] else "1"', "sys.argv[-1]"))  # fmt: skip
    running = await eventually(lambda: _running(handle), timeout=60)
    await nodes_client.signal_pool(session, running.node_id or "", "destroy")
    result = await handle.result()
    assert result.phase is Phase.SUCCEEDED and result.node_id != running.node_id
    rows = {n.node_id: n for n in await pool_stack.nodes()}
    assert rows[running.node_id or ""].state is NodeState.DELETED


async def test_the_local_provider_runs_behind_the_same_pool(
    client: Client, settings: Settings, tmp_path: Path
) -> None:
    local = settings.model_copy(
        update={
            "local_nodes": 0,  # no fixed agents: the pool starts them
            "node_slots": 1,
            "pool_tick_s": 1,
            "node_billing_period_s": 20,
            "retire_margin_s": 15,
            "local_hourly_price_microns": 1000,
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'local-ledger.db'}",
        }
    )
    assert local.pool_id == f"pool-local-{local.node_class}"
    provider = LocalProvider(local, tmp_path / "agents")
    ledger = await Ledger.open(local.effective_database_url)
    queue = f"control-{ULID()}"
    worker = build_control_worker(
        client,
        ledger,
        LocalStorage(Path(local.effective_storage_url.removeprefix("file://"))),
        local,
        task_queue=queue,
        provider=provider,
    )
    stack = PoolStack(client, local, ledger, queue, tmp_path)
    try:
        async with worker:
            result = await (await stack.start_execution()).result()
            assert result.phase is Phase.SUCCEEDED
            (node,) = await ledger.nodes(include_deleted=True)
            assert (node.node_id, node.provider, node.hourly_price_microns) == (
                result.node_id,
                "local",
                1000,
            )
            await eventually(lambda: _no_agents(provider, local.node_class), timeout=30)
            (node,) = await ledger.nodes(include_deleted=True)
            assert node.state is NodeState.DELETED
            await client.get_workflow_handle(stack.pool_id).terminate("test over")
    finally:
        provider.stop_all()
        await ledger.close()


async def _no_agents(provider: LocalProvider, node_class: str) -> bool:
    return not await provider.list_nodes(node_class)


async def test_the_pool_outlives_an_api_outage_and_then_serves(pool_stack: PoolStack) -> None:
    await pool_stack.client.start_workflow(
        "NodePoolWorkflow",
        PoolInput(config=pool_stack.settings.node_class_config()),
        id=pool_stack.pool_id,
        task_queue=pool_stack.queue,
    )
    await asyncio.to_thread(
        _post, pool_stack.settings.hcloud_endpoint, "/_standin/outage", {"seconds": 6}
    )
    handle = await pool_stack.start_execution()
    status = await eventually(lambda: _errored(pool_stack), timeout=10)
    assert "service_error" in (status.last_error or "")
    result = await handle.result()  # after the outage, a node is made
    assert result.phase is Phase.SUCCEEDED
    pool = await pool_stack.client.get_workflow_handle(pool_stack.pool_id).describe()
    assert pool.status is not None and pool.status.name == "RUNNING"


async def _errored(stack: PoolStack) -> PoolStatus | None:
    status = await stack.pool_status()
    return status if status.last_error else None
