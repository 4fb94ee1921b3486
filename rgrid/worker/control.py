"""The control worker: all workflows, and the activities that touch the ledger."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Worker

from rgrid.activities.alerts import AlertActivities
from rgrid.activities.control import ControlActivities
from rgrid.activities.names import CONTROL_QUEUE
from rgrid.config import Settings
from rgrid.infra.db import Ledger
from rgrid.infra.storage import Storage
from rgrid.workflows import WORKFLOWS


def build_control_worker(
    client: Client,
    ledger: Ledger,
    storage: Storage,
    settings: Settings,
    task_queue: str = CONTROL_QUEUE,
) -> Worker:
    """A worker for the control queue (tests pass their own queue name)."""
    control = ControlActivities(ledger, storage, settings)
    alerts = AlertActivities()
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[
            control.plan,
            control.record,
            control.compute_cost,
            control.load_items,
            alerts.send_webhook,
        ],
    )
