"""Control activities of node pools: look at the world (backlog, pollers, servers), create
and delete servers through a NodeProvider, keep the ledger's node rows, and wake a pool
when an execution waits. They run on the control worker: it has the ledger, nodes never do.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import structlog
from temporalio import activity
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError

from rgrid import names
from rgrid.errors import RgridError, ServiceUnavailableError, as_application_error
from rgrid.infra.ledger import Ledger
from rgrid.infra.providers import CreateNode, NodeProvider
from rgrid.models.node import Ack
from rgrid.models.pool import (
    DemandInput,
    DestroyNodeInput,
    NodeClassConfig,
    NodeState,
    ObservePoolInput,
    PoolInput,
    PoolNode,
    PoolObservation,
    ProvisionNodeInput,
    SaveNodeInput,
)

log = structlog.get_logger()


class ProvisioningActivities:
    """What a NodePoolWorkflow does outside itself, for one provider."""

    def __init__(
        self, provider: NodeProvider, client: Client, ledger: Ledger, pool: NodeClassConfig
    ) -> None:
        self._provider = provider
        self._client = client
        self._ledger = ledger
        self._pool = pool

    @activity.defn(name=names.OBSERVE_POOL)
    async def observe_pool(self, request: ObservePoolInput) -> PoolObservation:
        """The shared queue's backlog, the nodes whose agents poll, the labelled servers."""
        try:
            shared = await self._describe(names.shared_node_queue(request.node_class))
            polled = await asyncio.gather(
                *(self._describe(names.node_queue(node)) for node in request.node_ids)
            )
            servers = (
                await self._provider.list_nodes(request.node_class) if request.list_servers else []
            )
        except RgridError as exc:
            raise as_application_error(exc) from exc
        return PoolObservation(
            backlog=shared.stats.approximate_backlog_count if shared.HasField("stats") else 0,
            polling=[
                node for node, seen in zip(request.node_ids, polled, strict=True) if seen.pollers
            ],
            servers=servers,
            servers_listed=request.list_servers,
        )

    async def _describe(self, queue: str):  # type: ignore[no-untyped-def]
        try:
            return await self._client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=self._client.namespace,
                    task_queue=TaskQueue(name=queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                    report_stats=True,
                )
            )
        except RPCError as exc:
            raise ServiceUnavailableError(
                f"Temporal could not describe queue {queue} ({exc.message})", "retried"
            ) from exc

    @activity.defn(name=names.PROVISION_NODE)
    async def provision_node(self, request: ProvisionNodeInput) -> PoolNode:
        """Create one node's server and record it as provisioning (idempotent by node id)."""
        config = request.config
        try:
            existing = [
                s for s in await self._provider.list_nodes(config.node_class)
                if s.name == request.node_id
            ]  # fmt: skip
            # A retry after a lost answer finds the server it made: no second one.
            server = (
                existing[0]
                if existing
                else await self._provider.create_node(
                    CreateNode(
                        node_id=request.node_id,
                        node_class=config.node_class,
                        choice=request.choice,
                        image=config.image,
                        slots=config.slots,
                        ssh_key=config.ssh_key,
                        labels=config.labels,
                    )
                )
            )
        except RgridError as exc:
            log.warning("provision_failed", node=request.node_id, error=exc.one_line())
            raise as_application_error(exc) from exc
        node = PoolNode(
            node_id=request.node_id,
            server_id=server.server_id,
            server_type=server.server_type,
            location=server.location,
            slots=config.slots,
            hourly_price_microns=server.hourly_price_microns,
            currency=server.currency,
            created_at=server.created_at,
            caused_by=request.caused_by,
        )
        await self._ledger.save_node(node.record(config.provider, config.node_class))
        log.info("node_provisioned", node=node.node_id, server=node.server_id)
        return node

    @activity.defn(name=names.DESTROY_NODE)
    async def destroy_node(self, request: DestroyNodeInput) -> Ack:
        """Delete a node's server and record when it stopped billing."""
        record = request.record
        if request.dead:
            await self._ledger.save_node(record.model_copy(update={"state": NodeState.DEAD}))
        if record.server_id is not None:
            try:
                await self._provider.delete_node(record.server_id)
            except RgridError as exc:
                raise as_application_error(exc) from exc
        await self._ledger.save_node(
            record.model_copy(update={"state": NodeState.DELETED, "deleted_at": datetime.now(UTC)})
        )
        log.info("node_destroyed", node=record.node_id, reason=request.reason)
        return Ack()

    @activity.defn(name=names.SAVE_NODE)
    async def save_node(self, request: SaveNodeInput) -> Ack:
        """Keep a node's ledger row current (ready, draining)."""
        await self._ledger.save_node(request.record)
        return Ack()

    @activity.defn(name=names.REQUEST_CAPACITY)
    async def request_capacity(self, request: DemandInput) -> Ack:
        """Signal-with-start the pool: wake it (starting it if none runs) with a demand."""
        config = self._pool
        if request.node_class is not None:
            config = config.model_copy(update={"node_class": request.node_class})
        # The pool runs where this activity runs: the control queue.
        await self._client.start_workflow(
            "NodePoolWorkflow",
            PoolInput(config=config),
            id=request.pool_id,
            task_queue=activity.info().task_queue,
            start_signal="demand",
            start_signal_args=[request.demand],
        )
        return Ack()
