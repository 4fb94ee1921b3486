"""The control worker: all workflows, the activities that touch the ledger, the limit
watch, and (with a node provider) the node pool's provisioning activities.

    rgrid worker control [--health-port 8080]     (or python -m rgrid.worker.control)

Any number of replicas may run against one Temporal namespace: the singletons (the limit
watch, one node pool per class) are workflows with fixed ids started with USE_EXISTING,
so a second replica joins them instead of starting another. SIGTERM drains: the worker
stops polling, lets running activities finish (up to DRAIN_S), then exits.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

from rgrid import logs
from rgrid.activities.admission import AdmissionActivities
from rgrid.activities.alerts import AlertActivities
from rgrid.activities.control import ControlActivities
from rgrid.activities.limits import LimitActivities
from rgrid.activities.provisioning import ProvisioningActivities
from rgrid.config import Settings, load_settings
from rgrid.config_parts import ControlConfig
from rgrid.errors import RgridError
from rgrid.infra.ledger import Ledger
from rgrid.infra.providers import NodeProvider
from rgrid.infra.storage import open_storage
from rgrid.infra.storage.base import Storage
from rgrid.models.money import LimitWatchInput
from rgrid.models.pool import PoolInput
from rgrid.names import CONTROL_QUEUE, LIMIT_WATCH_ID
from rgrid.worker.limit_watch import check_limits_once
from rgrid.worker.service import (
    connect_until_up,
    private_umask,
    serve_health,
    stop_event,
    temporal_answers,
)
from rgrid.workflows import WORKFLOWS

log = structlog.get_logger()

DRAIN_S = 10.0


def build_control_worker(
    client: Client,
    ledger: Ledger,
    storage: Storage,
    settings: Settings,
    task_queue: str = CONTROL_QUEUE,
    provider: NodeProvider | None = None,
) -> Worker:
    """A worker for the control queue (tests pass their own queue name); with a provider
    it also hosts the node pool's activities."""
    control = ControlActivities(ledger, storage, ControlConfig.of(settings))
    alerts = AlertActivities()
    limits = LimitActivities(lambda: check_limits_once(ledger, client, task_queue))
    activities: list[Callable[..., Any]] = [
        AdmissionActivities(ledger, settings).admit,
        control.plan,
        control.record,
        control.compute_cost,
        control.finish,
        control.load_items,
        alerts.send_webhook,
        limits.check_limits,
    ]
    if provider is not None:
        pool = ProvisioningActivities(provider, client, ledger, settings.node_class_config())
        activities += [
            pool.observe_pool,
            pool.provision_node,
            pool.destroy_node,
            pool.save_node,
            pool.request_capacity,
        ]
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=activities,
        graceful_shutdown_timeout=timedelta(seconds=DRAIN_S),
    )


async def start_singletons(client: Client, settings: Settings) -> None:
    """Start the limit watch and (with a pool) the node pool, or join the running ones.
    The pool starts now, not on first demand, so it deletes any orphans a crash left."""
    await client.start_workflow(
        "LimitWatchWorkflow",
        LimitWatchInput(every_s=settings.limit_check_s),
        id=LIMIT_WATCH_ID,
        task_queue=CONTROL_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    if settings.pool_id is not None:
        await client.start_workflow(
            "NodePoolWorkflow",
            PoolInput(config=settings.node_class_config()),
            id=settings.pool_id,
            task_queue=CONTROL_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )


async def run_control(settings: Settings, health_port: int | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then drain; a Temporal that is away is waited for."""
    from rgrid.worker.pool_nodes import pool_provider, release_pool_nodes

    stop = stop_event()
    client = await connect_until_up(settings, stop)
    if client is None:
        return
    ledger = await Ledger.open(settings.effective_database_url)
    storage = open_storage(settings.effective_storage_url)
    provider = pool_provider(settings)
    worker = build_control_worker(client, ledger, storage, settings, provider=provider)
    health = None
    try:
        async with worker:
            await start_singletons(client, settings)

            async def healthy() -> bool:
                return worker.is_running and await temporal_answers(client)

            if health_port is not None:
                health = await serve_health(health_port, healthy)
            log.info("control_started", address=settings.effective_temporal_address)
            await stop.wait()
            log.info("control_draining", drain_s=DRAIN_S)
    finally:
        if health is not None:
            await health.cleanup()
        if provider is not None:
            await release_pool_nodes(provider, ledger, settings)
        await ledger.close()
        await storage.aclose()
    log.info("control_stopped")


def parser() -> argparse.ArgumentParser:
    """`rgrid worker control` / `python -m rgrid.worker.control` options."""
    parser = argparse.ArgumentParser(
        prog="rgrid worker control", description="rgrid control worker"
    )
    parser.add_argument(
        "--health-port", type=int, default=None, help="serve GET /healthz on 127.0.0.1:PORT"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    private_umask()
    logs.configure(json=True)
    try:
        asyncio.run(run_control(load_settings(), args.health_port))
    except RgridError as exc:  # e.g. a bad setting: one line, for the supervisor's record
        print(f"ERROR: {exc.one_line()}", file=sys.stderr, flush=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
