"""The node agent: one per node. It claims slots from the shared queue of its node class
and runs staged work from its own queue. It holds no database credentials.

    python -m rgrid.worker.agent --node-id local-1 --slots 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from temporalio.client import Client
from temporalio.worker import FixedSizeSlotSupplier, Worker, WorkerTuner

from rgrid import logs, names
from rgrid.activities.leases import LeaseBook, LeaseBookActivities, LeaseSlotSupplier
from rgrid.activities.node import NodeActivities, NodeIdentity
from rgrid.config import Settings, load_settings
from rgrid.errors import RgridError
from rgrid.infra.runtime.docker import DockerRuntime, docker_problem
from rgrid.infra.runtime.process import ProcessRuntime
from rgrid.infra.runtime.select import SelectingRuntime
from rgrid.infra.storage import open_storage
from rgrid.infra.temporal import keyring_of
from rgrid.models.node import AgentState
from rgrid.worker.service import connect_until_up, private_umask, stop_event

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
        abandon_s=settings.lease_abandon_s,
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
            activities.execute,
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


def agent_state_file(settings: Settings, node_id: str) -> Path:
    """Where a running agent describes itself (its runtime and why)."""
    return settings.node_dir / node_id / "agent.json"


async def choose_runtime() -> tuple[bool, str]:
    """Whether this node offers docker, and why (or why not): a machine without a
    reachable daemon is a normal node on the process runtime."""
    problem = await docker_problem()
    if problem is None:
        return True, "a Docker daemon answers on the default socket"
    return False, f"no Docker daemon ({problem})"


async def run_agent(
    settings: Settings, node_id: str, slots: int, hourly_price_microns: int | None = None
) -> None:
    """Serve until SIGTERM or SIGINT; a Temporal that is away is waited for."""
    stop = stop_event()
    state = agent_state_file(settings, node_id)
    # Before any worker polls: a node that cannot keep its files takes no work, and its
    # log ends with why (not with the worker's shutdown chatter).
    state.parent.mkdir(parents=True, exist_ok=True)
    docker, reason = await choose_runtime()
    runtime = "docker" if docker else "process"
    client = await connect_until_up(settings, stop)
    if client is None:
        return
    workers, activities = build_workers(
        client, settings, node_id, slots, docker, hourly_price_microns
    )
    reaper = asyncio.create_task(_reap(activities))
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        tmp = state.with_suffix(".tmp")
        tmp.write_text(
            AgentState(
                node_id=node_id,
                pid=os.getpid(),
                runtime=runtime,
                reason=reason,
                started_at=datetime.now(UTC),
            ).model_dump_json()
        )
        tmp.replace(state)
        log.info(
            "agent_started",
            node=node_id,
            slots=slots,
            node_class=settings.node_class,
            runtime=runtime,
            reason=reason,
        )
        await stop.wait()
        log.info("agent_draining", node=node_id)
    reaper.cancel()
    await activities.close()
    state.unlink(missing_ok=True)
    log.info("agent_stopped", node=node_id)


def parser() -> argparse.ArgumentParser:
    """`rgrid worker agent` / `python -m rgrid.worker.agent` options."""
    parser = argparse.ArgumentParser(prog="rgrid worker agent", description="rgrid node agent")
    parser.add_argument("--node-id", required=True)
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument(
        "--hourly-price-microns", type=int, default=None, help="the node's price, for leases"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    private_umask()
    logs.configure(json=True)
    try:
        asyncio.run(run_agent(load_settings(), args.node_id, args.slots, args.hourly_price_microns))
    except RgridError as exc:  # e.g. a bad setting: one line, for the supervisor's record
        print(f"ERROR: {exc.one_line()}", file=sys.stderr, flush=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
