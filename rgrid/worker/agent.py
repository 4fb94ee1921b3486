"""The node agent: one per node. It claims slots from the shared queue of its node class
and runs staged work from its own queue. It holds no database credentials.

    python -m rgrid.worker.agent --node-id local-1 --slots 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from datetime import timedelta

import structlog
from temporalio.client import Client
from temporalio.worker import FixedSizeSlotSupplier, Worker, WorkerTuner

from rgrid import logs, names
from rgrid.activities.leases import LeaseBook, LeaseBookActivities, LeaseSlotSupplier
from rgrid.activities.node import NodeActivities, NodeIdentity
from rgrid.config import Settings, load_settings
from rgrid.infra.runtime.docker import DockerRuntime, docker_available
from rgrid.infra.runtime.process import ProcessRuntime
from rgrid.infra.runtime.select import SelectingRuntime
from rgrid.infra.storage import open_storage
from rgrid.infra.temporal import connect, keyring_of

log = structlog.get_logger()

REAP_EVERY_S = 5.0


def build_workers(
    client: Client,
    settings: Settings,
    node_id: str,
    slots: int,
    docker: bool = False,
    hourly_price_microns: int | None = None,
) -> tuple[list[Worker], NodeActivities]:
    """The claim worker and the node's own worker, sharing one lease book."""
    book = LeaseBook(slots)
    node_dir = settings.node_dir / node_id
    runtime = SelectingRuntime(
        ProcessRuntime(cache_dir=node_dir / "cache"),
        DockerRuntime(settings.python_image, settings.node_image, settings.ca_bundle)
        if docker
        else None,
    )
    activities = NodeActivities(
        node=NodeIdentity(
            node_id=node_id,
            hourly_price_microns=settings.local_hourly_price_microns
            if hourly_price_microns is None
            else hourly_price_microns,
        ),
        book=book,
        runtime=runtime,
        storage=open_storage(settings.effective_storage_url),
        work_root=node_dir / "leases",
        lease_ttl_s=settings.lease_ttl_s,
        keyring=keyring_of(settings),
    )
    control = LeaseBookActivities(node_id, book)
    fixed = FixedSizeSlotSupplier(4)
    claim_worker = Worker(
        client,
        task_queue=names.shared_node_queue(settings.node_class),
        activities=[activities.claim_node],
        tuner=WorkerTuner.create_composite(
            workflow_supplier=fixed,
            activity_supplier=LeaseSlotSupplier(book),
            local_activity_supplier=fixed,
            nexus_supplier=fixed,
        ),
        identity=f"{node_id}-claims",
    )
    node_worker = Worker(
        client,
        task_queue=names.node_queue(node_id),
        activities=[
            activities.stage_inputs,
            activities.run_container,
            activities.collect_outputs,
            activities.release_node,
            control.ping_node,
            control.drain_node,
        ],
        max_concurrent_activities=slots * 4 + 4,
        # Heartbeats reach the server at least this often, so a cancel lands in ~1 s.
        max_heartbeat_throttle_interval=timedelta(seconds=1),
        default_heartbeat_throttle_interval=timedelta(seconds=1),
        graceful_shutdown_timeout=timedelta(seconds=5),
        identity=node_id,
    )
    return [claim_worker, node_worker], activities


async def _reap(activities: NodeActivities) -> None:
    while True:
        await asyncio.sleep(REAP_EVERY_S)
        activities.reap_expired()


async def run_agent(
    settings: Settings, node_id: str, slots: int, hourly_price_microns: int | None = None
) -> None:
    """Serve until SIGTERM or SIGINT."""
    client = await connect(settings)
    docker = await docker_available()
    workers, activities = build_workers(
        client, settings, node_id, slots, docker, hourly_price_microns
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "agent_started", node=node_id, slots=slots, node_class=settings.node_class, docker=docker
    )
    reaper = asyncio.create_task(_reap(activities))
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        await stop.wait()
    reaper.cancel()
    await activities.close()
    log.info("agent_stopped", node=node_id)


def main() -> None:
    parser = argparse.ArgumentParser(description="rgrid node agent")
    parser.add_argument("--node-id", required=True)
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument(
        "--hourly-price-microns", type=int, default=None, help="the node's price, for leases"
    )
    args = parser.parse_args()
    logs.configure(json=True)
    asyncio.run(run_agent(load_settings(), args.node_id, args.slots, args.hourly_price_microns))


if __name__ == "__main__":
    main()
