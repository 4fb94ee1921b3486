"""The control worker: all workflows, and the activities that touch the ledger
(and, with a node provider, the node pool's provisioning activities)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from rgrid.activities.alerts import AlertActivities
from rgrid.activities.control import ControlActivities
from rgrid.activities.provisioning import ProvisioningActivities
from rgrid.config import Settings
from rgrid.infra.ledger import Ledger
from rgrid.infra.providers import NodeProvider
from rgrid.infra.storage.base import Storage
from rgrid.names import CONTROL_QUEUE
from rgrid.workflows import WORKFLOWS


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
    control = ControlActivities(ledger, storage, settings)
    alerts = AlertActivities()
    activities: list[Callable[..., Any]] = [
        control.plan,
        control.record,
        control.compute_cost,
        control.load_items,
        alerts.send_webhook,
    ]
    if provider is not None:
        pool = ProvisioningActivities(provider, client, ledger, settings)
        activities += [
            pool.observe_pool,
            pool.provision_node,
            pool.destroy_node,
            pool.save_node,
            pool.request_capacity,
        ]
    return Worker(client, task_queue=task_queue, workflows=WORKFLOWS, activities=activities)
