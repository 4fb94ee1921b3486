"""Temporal's view of a task queue (pollers, backlog by priority, dispatch rate) and its
fairness weights, through the workflow service's DescribeTaskQueue and UpdateTaskQueueConfig."""

from __future__ import annotations

from pydantic import BaseModel, Field
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeTaskQueueRequest,
    UpdateTaskQueueConfigRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError

from rgrid.errors import ServiceUnavailableError


class QueueView(BaseModel):
    """One activity task queue as Temporal reports it (its figures are approximate)."""

    name: str
    pollers: int = 0
    backlog: int = 0
    backlog_by_priority: dict[int, int] = Field(default_factory=dict)
    dispatch_per_s: float = 0.0
    weights: dict[str, float] = Field(default_factory=dict)  # fairness weight overrides


async def describe_queue(client: Client, queue: str) -> QueueView:
    """Pollers, backlog and fairness weights of an activity task queue."""
    try:
        found = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                report_stats=True,
                report_config=True,
            )
        )
    except RPCError as exc:
        raise ServiceUnavailableError(
            f"Temporal could not describe queue {queue} ({exc.message})", "retry"
        ) from exc
    stats = found.stats if found.HasField("stats") else None
    return QueueView(
        name=queue,
        pollers=len(found.pollers),
        backlog=stats.approximate_backlog_count if stats else 0,
        backlog_by_priority={
            key: value.approximate_backlog_count
            for key, value in found.stats_by_priority_key.items()
            if value.approximate_backlog_count
        },
        dispatch_per_s=stats.tasks_dispatch_rate if stats else 0.0,
        weights=dict(found.config.fairness_weight_overrides) if found.HasField("config") else {},
    )


async def set_fairness_weights(
    client: Client, queue: str, weights: dict[str, float], unset: list[str] | None = None
) -> dict[str, float]:
    """Set (and unset) fairness weight overrides on a queue; returns them all. Waiting
    tasks are dispatched by the new weights at once."""
    try:
        done = await client.workflow_service.update_task_queue_config(
            UpdateTaskQueueConfigRequest(
                namespace=client.namespace,
                identity=client.identity,
                task_queue=queue,
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                set_fairness_weight_overrides=weights,
                unset_fairness_weight_overrides=unset or [],
            )
        )
    except RPCError as exc:
        raise ServiceUnavailableError(
            f"Temporal could not set the weights of queue {queue} ({exc.message})",
            "check that the server has fairness enabled (matching.enableFairness)",
        ) from exc
    return dict(done.config.fairness_weight_overrides)
