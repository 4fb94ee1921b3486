"""NodePoolWorkflow (id `pool-<provider>-<class>`): scales one node class; never assigns work.

On a timer and on a `demand` signal it looks at the shared queue's backlog, the nodes'
pollers and the provider's servers; it creates nodes up to max_nodes (`provision_node`,
falling back through the configured type@location choices), marks a node ready when its
agent polls, pings ready nodes for their load, retires idle ones shortly before their
next billing hour (`destroy_node`), deletes labelled servers it does not know (orphans),
and declares a node dead only when it missed its pings AND the API says it is not
running. Long-lived: it continues as new when Temporal suggests it.

After temporalio/samples-python's safe_message_handlers (handlers only change state; the
loop does the work; all handlers finish before continue-as-new) and
worker_specific_task_queues (each node's own queue, here pinged for liveness).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from rgrid import names
    from rgrid.activities.leases import LeaseBookActivities
    from rgrid.activities.provisioning import ProvisioningActivities
    from rgrid.errors import Failure
    from rgrid.models.node import NodeActionInput, NodeLoad
    from rgrid.models.pool import (
        Demand,
        DestroyNodeInput,
        NoCapacity,
        NodeState,
        ObservePoolInput,
        PoolInput,
        PoolNode,
        PoolObservation,
        PoolState,
        PoolStatus,
        ProvisionNodeInput,
        SaveNodeInput,
    )
    from rgrid.workflows import pool_policy as policy

CONTROL_TIMEOUT = timedelta(seconds=60)
CONTROL_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
# Executions remembered as waiting (to fail them at once when no node can be made).
MAX_WAITING = 1000
LIST_EVERY = timedelta(seconds=10)
# A live agent takes a ping within milliseconds; a tick must not wait long on a dead one.
PING_PICKUP = timedelta(seconds=5)
# A quick call on one node's own queue (ping, drain), answered with its load.
NodeCall = Callable[["LeaseBookActivities", NodeActionInput], Awaitable[NodeLoad]]
# Provisioning errors that another type@location may not have (see rgrid.errors).
FALLBACK_ERRORS = (
    Failure.QUOTA_EXCEEDED,
    Failure.CAPACITY_UNAVAILABLE,
    Failure.UNKNOWN_SERVER_CHOICE,
)


@workflow.defn(name="NodePoolWorkflow")
class NodePoolWorkflow:
    @workflow.init
    def __init__(self, request: PoolInput) -> None:
        self._config = request.config
        self._state = request.state or PoolState()
        self._fresh_demand = 0  # demands since the last look: the backlog stat may lag
        self._wake = False
        self._listed_at: datetime | None = None
        self._gone_at: datetime | None = None  # when a node that took claims was last destroyed

    @workflow.signal(name="demand")
    def demand(self, request: Demand) -> None:
        self._state.waiting[request.execution_id] = request.caused_by or request.execution_id
        if len(self._state.waiting) > MAX_WAITING:
            # Oldest first out: they most likely found a slot long ago (a long batch keeps
            # a backlog, so the set is not emptied by a quiet moment).
            del self._state.waiting[next(iter(self._state.waiting))]
        self._fresh_demand += 1
        self._wake = True

    @workflow.signal(name="drain")
    def drain(self, request: NodeActionInput) -> None:
        if request.node_id not in self._state.drain:
            self._state.drain.append(request.node_id)
        self._wake = True

    @workflow.signal(name="destroy")
    def destroy(self, request: NodeActionInput) -> None:
        if request.node_id not in self._state.destroy:
            self._state.destroy.append(request.node_id)
        self._wake = True

    @workflow.query(name="status")
    def status(self) -> PoolStatus:
        return PoolStatus(
            pool_id=workflow.info().workflow_id,
            config=self._config,
            nodes=list(self._state.nodes.values()),
            waiting=len(self._state.waiting),
            last_error=self._state.last_error,
        )

    @workflow.run
    async def run(self, request: PoolInput) -> None:
        while True:
            try:
                await self._tick()
            except ActivityError as err:
                # The pool must outlive any outage (Temporal, the provider's API, the
                # ledger): a failed look or action is tried again on the next tick.
                self._state.last_error = _message(err)
                workflow.logger.warning("pool tick failed: %s", self._state.last_error)
            info = workflow.info()
            history = info.get_current_history_length()
            if info.is_continue_as_new_suggested() or history > self._config.max_history:
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(PoolInput(config=self._config, state=self._state))
            booting = any(n.state is NodeState.PROVISIONING for n in self._state.nodes.values())
            tick = min(self._config.boot_tick_s, self._config.tick_s) if booting else None
            try:
                await workflow.wait_condition(
                    lambda: self._wake, timeout=timedelta(seconds=tick or self._config.tick_s)
                )
            except TimeoutError:
                pass

    async def _tick(self) -> None:
        self._wake = False
        fresh, self._fresh_demand = self._fresh_demand, 0
        nodes = self._state.nodes
        started = workflow.now()
        # Servers are listed at most every LIST_EVERY (fast boot-time ticks would spend
        # Hetzner's 3600 requests an hour); queues are looked at every tick.
        list_servers = self._listed_at is None or started - self._listed_at >= min(
            LIST_EVERY, timedelta(seconds=self._config.tick_s)
        )
        seen = await workflow.execute_activity_method(
            ProvisioningActivities.observe_pool,
            ObservePoolInput(
                node_class=self._config.node_class,
                node_ids=list(nodes),
                list_servers=list_servers,
            ),
            start_to_close_timeout=CONTROL_TIMEOUT,
            retry_policy=CONTROL_RETRY,
        )
        servers = {s.name: s for s in seen.servers}
        if seen.servers_listed:
            self._listed_at = started
            await self._delete_orphans(seen)
        await self._update_nodes(seen)
        now = workflow.now()
        for node in list(nodes.values()):
            status = servers[node.node_id].status if node.node_id in servers else "missing"
            known = seen.servers_listed  # decisions on the server's status need a listing
            if node.node_id in self._state.destroy:
                await self._destroy(node, "asked to be destroyed")
            elif known and policy.is_dead(node, now, self._config, status):
                await self._destroy(node, f"no answer and server {status}", dead=True)
            elif node.state is NodeState.PROVISIONING and (
                (known and status == "missing") or policy.boot_timed_out(node, now, self._config)
            ):
                await self._destroy(node, f"never became ready (server {status})")
            elif policy.should_retire(node, now, self._config, seen.backlog):
                await self._retire(node)
        self._state.destroy = [n for n in self._state.destroy if n in nodes]
        for node in nodes.values():
            if node.state is NodeState.READY and policy.too_old(node, now, self._config):
                if node.node_id not in self._state.drain:
                    self._state.drain.append(node.node_id)  # no new work; goes once idle
        await self._drain_asked()
        gone = self._gone_at if workflow.patched("pool-quiet-after-destroy") else None
        backlog = policy.backlog_to_serve(seen.backlog, self._state.last_backlog, fresh, now, gone)
        self._state.last_backlog = seen.backlog
        if backlog == 0:
            self._state.waiting.clear()  # nobody waits any more
        await self._scale_up(backlog)

    async def _update_nodes(self, seen: PoolObservation) -> None:
        """Ready when its agent polls; ping ready nodes for their load (their heartbeat)."""
        now = workflow.now()
        for node in self._state.nodes.values():
            if node.state is NodeState.PROVISIONING and node.node_id in seen.polling:
                node.state = NodeState.READY
                node.ready_at = node.last_seen = now
                await self._save(node)
        # Pinged every heartbeat_s, not on every (faster, boot-time) tick.
        alive = [
            n
            for n in self._state.nodes.values()
            if n.state in (NodeState.READY, NodeState.DRAINING)
            and (
                n.last_seen is None
                or (now - n.last_seen).total_seconds() >= self._config.heartbeat_s
                or n.state is NodeState.DRAINING
            )
        ]
        loads = await asyncio.gather(*(self._ping(n) for n in alive))
        for node, load in zip(alive, loads, strict=True):
            if load is not None:
                node.in_use = load.in_use
                node.last_seen = now

    async def _ping(self, node: PoolNode) -> NodeLoad | None:
        # None is one missed ping; dead only with the API's word too.
        return await self._ask_node(LeaseBookActivities.ping_node, node)

    async def _ask_node(self, activity: NodeCall, node: PoolNode) -> NodeLoad | None:
        """Run a quick activity on the node's own queue: its load, or None if unreachable."""
        try:
            return await workflow.execute_activity_method(
                activity,
                NodeActionInput(node_id=node.node_id),
                task_queue=names.node_queue(node.node_id),
                schedule_to_start_timeout=PING_PICKUP,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except ActivityError:
            return None

    async def _delete_orphans(self, seen: PoolObservation) -> None:
        for server in seen.servers:
            if server.name in self._state.nodes:
                continue
            workflow.logger.warning("deleting orphan server %s", server.name)
            orphan = PoolNode(
                node_id=server.name,
                server_id=server.server_id,
                server_type=server.server_type,
                location=server.location,
                created_at=server.created_at,
            )
            await self._destroy(orphan, "orphan: labelled but unknown to the pool")

    async def _retire(self, node: PoolNode) -> None:
        """Drain first, then delete only if still idle: a claim that landed since the ping
        keeps the node until its run ends."""
        if node.state is NodeState.READY and not policy.silent(node, workflow.now(), self._config):
            load = await self._drain(node)
            if load is None or load.in_use > 0:
                return  # draining (or unreachable): a later tick decides
        await self._destroy(node, "idle before its next billing hour")

    async def _drain(self, node: PoolNode) -> NodeLoad | None:
        """Tell a node to take no more claims; its load after that, or None if unreachable."""
        load = await self._ask_node(LeaseBookActivities.drain_node, node)
        if load is None:
            return None
        node.state = NodeState.DRAINING
        node.in_use = load.in_use
        await self._save(node)
        return load

    async def _drain_asked(self) -> None:
        for node_id in self._state.drain:
            node = self._state.nodes.get(node_id)
            if node is not None and node.state is NodeState.READY:
                await self._drain(node)  # unreachable: try again next tick
        self._state.drain = [
            n
            for n in self._state.drain
            if n in self._state.nodes and self._state.nodes[n].state is NodeState.READY
        ]

    async def _scale_up(self, backlog: int) -> None:
        nodes = list(self._state.nodes.values())
        wanted = policy.nodes_to_create(backlog, nodes, self._config, workflow.now())
        if wanted == 0:
            return
        workflow.logger.info("adding %d node(s) for a backlog of %d", wanted, backlog)
        caused_by = next(iter(self._state.waiting.values()), None)
        errors: list[str] = []
        # In parallel: on Hetzner a create takes a second or two, and a batch wants many.
        await asyncio.gather(*(self._provision(caused_by, errors) for _ in range(wanted)))
        if errors and not any(n.state in policy.LIVE for n in self._state.nodes.values()):
            await self._no_capacity(errors[-1])

    async def _provision(self, caused_by: str | None, errors: list[str]) -> PoolNode | None:
        """Create one node, trying each configured type@location in order; `errors` gets
        the refusals that mean no node can be made (quota, capacity, unknown choice)."""
        self._state.counter += 1
        node_id = f"{self._config.node_class}-{self._state.counter}-{workflow.uuid4().hex[:6]}"
        for choice in self._config.choices:
            try:
                node = await workflow.execute_activity_method(
                    ProvisioningActivities.provision_node,
                    ProvisionNodeInput(
                        config=self._config, node_id=node_id, choice=choice, caused_by=caused_by
                    ),
                    start_to_close_timeout=timedelta(minutes=3),
                    retry_policy=CONTROL_RETRY,
                )
            except ActivityError as err:
                cause = err.cause
                self._state.last_error = _message(err)
                if isinstance(cause, ApplicationError) and cause.type in FALLBACK_ERRORS:
                    errors.append(self._state.last_error)
                    continue  # the next choice may have what this one lacks
                return None  # a passing fault (API down): tried again next tick
            self._state.nodes[node.node_id] = node
            self._state.last_error = None
            return node
        return None

    async def _no_capacity(self, message: str) -> None:
        """No node exists or could be made: every waiting execution fails with the reason,
        instead of waiting out its queue timeout."""
        waiting, self._state.waiting = self._state.waiting, {}
        for execution_id in waiting:
            try:
                await workflow.get_external_workflow_handle(execution_id).signal(
                    "no_capacity", NoCapacity(message=message)
                )
            except FailureError:
                pass  # it ended meanwhile

    async def _destroy(self, node: PoolNode, reason: str, dead: bool = False) -> None:
        workflow.logger.info("destroying node %s: %s", node.node_id, reason)
        await workflow.execute_activity_method(
            ProvisioningActivities.destroy_node,
            DestroyNodeInput(
                record=node.record(self._config.provider, self._config.node_class),
                reason=reason,
                dead=dead,
            ),
            start_to_close_timeout=CONTROL_TIMEOUT,
            retry_policy=CONTROL_RETRY,
        )
        self._state.nodes.pop(node.node_id, None)
        if node.ready_at is not None:
            self._gone_at = workflow.now()

    async def _save(self, node: PoolNode) -> None:
        await workflow.execute_activity_method(
            ProvisioningActivities.save_node,
            SaveNodeInput(record=node.record(self._config.provider, self._config.node_class)),
            start_to_close_timeout=CONTROL_TIMEOUT,
            retry_policy=CONTROL_RETRY,
        )


def _message(err: ActivityError) -> str:
    cause = err.cause
    return cause.message if isinstance(cause, ApplicationError) else str(cause or err)
