"""Time from demand to a ready agent through the node pool on the Hetzner API stand-in,
against starting the same agent directly as a process, side by side.

    .venv/bin/python bench/pool_ready.py [--runs 3] [--boot-delay 0]

rgrid: an execution is started on an empty node class; its demand wakes the pool, which
creates a server through the real hcloud client; the stand-in applies the real user data
and starts the agent unit; the pool sees the agent's pollers and marks the node ready.
Baseline: `python -m rgrid.worker.agent` started directly, until its queue has pollers.
The stand-in boots in `--boot-delay` seconds: on real Hetzner that part dominates (see the
README), so this measures what rgrid itself adds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from ulid import ULID

from rgrid import names
from rgrid.client import submit
from rgrid.client.session import Session
from rgrid.config import Settings
from rgrid.config_parts import HetznerConfig
from rgrid.infra.ledger import Ledger
from rgrid.infra.providers.hetzner import HetznerProvider
from rgrid.infra.storage.local import LocalStorage
from rgrid.models.execution import ExecutionStatus
from rgrid.models.pool import NodeState, PoolStatus
from rgrid.worker.control import build_control_worker
from rgrid.worker.dev import temporal_binary
from tests.standins.hetzner import serve

TOKEN = "bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def has_pollers(client: Client, queue: str) -> bool:
    answer = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        )
    )
    return bool(answer.pollers)


async def direct_agent(client: Client, settings: Settings, root: Path) -> float:
    node_id = f"direct-{str(ULID()).lower()}"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(root),
        "RGRID_HOME": str(root / node_id),
        "RGRID_TEMPORAL_ADDRESS": settings.effective_temporal_address,
        "RGRID_STORAGE_URL": settings.effective_storage_url,
        "RGRID_NODE_CLASS": "direct",
    }
    began = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rgrid.worker.agent", "--node-id", node_id, "--slots", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not await has_pollers(client, names.node_queue(node_id)):
            await asyncio.sleep(0.05)
        return time.perf_counter() - began
    finally:
        proc.kill()
        proc.wait()


async def through_pool(
    client: Client, settings: Settings, root: Path, ledger: Ledger, boot_delay: float
) -> tuple[float, float, float]:
    """(demand -> server created, demand -> agent polls, demand -> pool marks ready)."""
    cls = f"bench-{str(ULID()).lower()}"
    port = free_port()
    runner, api = await serve(port, root / cls, token=TOKEN, boot_delay_s=boot_delay)
    config = settings.model_copy(
        update={
            "node_class": cls,
            "hcloud_endpoint": f"http://127.0.0.1:{port}/v1",
            "node_slots": 1,
        }
    )
    queue = f"control-{cls}"
    worker = build_control_worker(
        client,
        ledger,
        LocalStorage(root / "storage"),
        config,
        task_queue=queue,
        provider=HetznerProvider(HetznerConfig.of(config)),
    )
    script = root / "trivial.py"
    script.write_text("print('hi')\n# rgrid: no-cache\n")
    created = polling = ready = 0.0
    async with worker:
        spec, _ = await submit.prepare(Session(config), submit.RunRequest(script=script), root)
        began = time.perf_counter()
        handle = await client.start_workflow(
            "ExecutionWorkflow",
            spec,
            id=f"exec-{ULID()}",
            task_queue=queue,
            result_type=ExecutionStatus,
        )
        pool = client.get_workflow_handle(config.pool_id or "")
        while not ready:
            await asyncio.sleep(0.02)
            now = time.perf_counter() - began
            if not created and api.servers:
                created = now
            if created and not polling:
                node = next(iter(api.servers.values())).data["name"]
                if await has_pollers(client, names.node_queue(node)):
                    polling = now
            if created:
                status = await pool.query("status", result_type=PoolStatus)
                if any(n.state is NodeState.READY for n in status.nodes):
                    ready = now
        await handle.result()
        await pool.terminate("bench over")
    await runner.cleanup()
    return created, polling or ready, ready


async def main(runs: int, boot_delay: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_binary(),
            data_converter=pydantic_data_converter,
            ui=False,
        )
        async with env:
            target = env.client.service_client.config.target_host
            settings = Settings(
                home=root,
                temporal_address=target,
                storage_url=(root / "storage").as_uri(),
                provider="hetzner",
                hcloud_token=TOKEN,
                pool_tick_s=30,  # the default: demand, not the timer, wakes the pool
            )
            ledger = await Ledger.open(f"sqlite+aiosqlite:///{root / 'ledger.db'}")
            await direct_agent(env.client, settings, root)  # warm the page cache
            direct = [await direct_agent(env.client, settings, root) for _ in range(runs)]
            pooled = [
                await through_pool(env.client, settings, root, ledger, boot_delay)
                for _ in range(runs)
            ]
            await ledger.close()
    med = statistics.median
    ready = med(p[2] for p in pooled)
    print(f"runs per measurement:                 {runs} (stand-in boot delay {boot_delay} s)")
    print(f"agent started directly -> polls:      {med(direct) * 1000:7.0f} ms (baseline)")
    print(f"demand -> server created (hcloud):    {med(p[0] for p in pooled) * 1000:7.0f} ms")
    print(f"demand -> agent polls:                {med(p[1] for p in pooled) * 1000:7.0f} ms")
    print(f"demand -> pool marks the node ready:  {ready * 1000:7.0f} ms")
    print(f"ratio pool / direct (to polling):     {med(p[1] for p in pooled) / med(direct):7.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--boot-delay", type=float, default=0.0)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.boot_delay))
