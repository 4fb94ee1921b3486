"""How an ExecutionWorkflow gets a node slot: the claim on its class's shared queue (with
priority and the project's fair share), the node pool woken while it waits, and the
answers that end the wait early (no node can be made; no node lives). Deterministic
workflow code, a base of ExecutionWorkflow."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from rgrid import names
    from rgrid.activities.node import NodeActivities
    from rgrid.activities.provisioning import ProvisioningActivities
    from rgrid.errors import Failure
    from rgrid.models.execution import ExecutionSpec, ExecutionStatus
    from rgrid.models.node import ClaimNodeInput, NodeLease
    from rgrid.models.pool import Demand, DemandInput
    from rgrid.workflows import visibility


class ClaimSteps:
    """The claiming half of ExecutionWorkflow; the flags are the workflow's patches."""

    _status: ExecutionStatus
    _no_capacity: str | None
    _pool_demand: bool
    _claim_priority: bool
    _no_node_fails: bool
    _cancel_is_cancel: bool
    _visible: bool
    _show: Callable[[], None]  # ExecutionReports' (an annotation only: no attribute here)

    async def _claim(self, spec: ExecutionSpec) -> NodeLease:
        claim = workflow.start_activity_method(
            NodeActivities.claim_node,
            ClaimNodeInput(execution_id=self._status.execution_id, attempt=self._status.attempts),
            task_queue=names.shared_node_queue(spec.node_class),
            schedule_to_start_timeout=timedelta(seconds=spec.queue_timeout_s),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_attempts=3),
            # Temporal's matching orders the waiting claims: priority first, then a fair
            # share per project within a priority (weights: the queue's overrides).
            priority=Priority(priority_key=spec.priority, fairness_key=spec.project)
            if self._claim_priority
            else Priority.default,
        )
        if spec.pool_id is not None and self._pool_demand:
            await self._demand(spec.pool_id, spec, claim)
        elif self._no_node_fails:
            self._no_capacity = None  # the supervisor repeats it while no node lives
            try:
                await workflow.wait_condition(lambda: claim.done() or self._no_capacity is not None)
            except asyncio.CancelledError:
                claim.cancel()  # cancelled while queued: the claim must not land later
                raise
            if not claim.done():
                claim.cancel()
                raise ApplicationError(
                    f"no {spec.node_class!r} node is alive: {self._no_capacity}",
                    type=Failure.NO_NODE_AVAILABLE,
                    non_retryable=True,
                )
        try:
            lease = await claim
        except ActivityError as err:
            if self._cancel_is_cancel and isinstance(err.cause, CancelledError):
                raise asyncio.CancelledError() from err  # cancelled while queued
            raise ApplicationError(
                f"no {spec.node_class!r} node took the run within {spec.queue_timeout_s} s",
                type=Failure.NO_NODE_AVAILABLE,
                non_retryable=True,
            ) from err
        self._status.node_id = lease.node_id
        if self._visible:
            visibility.upsert_node(lease.node_id)
        self._show()
        return lease

    async def _demand(
        self, pool_id: str, spec: ExecutionSpec, claim: asyncio.Future[NodeLease]
    ) -> None:
        """Wake the node pool (scheduled with the claim, so the claim is already queued when
        the pool looks), and fail at once if the pool says no node can be made."""
        self._no_capacity = None  # an answer to an earlier attempt's demand is old news
        try:
            await workflow.execute_activity_method(
                ProvisioningActivities.request_capacity,
                DemandInput(
                    pool_id=pool_id,
                    demand=Demand(execution_id=self._status.execution_id, caused_by=spec.batch_id),
                    node_class=spec.node_class,
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=5),
            )
        except ActivityError as err:
            # The pool's own timer still sees the backlog; the claim waits on regardless.
            workflow.logger.warning("could not wake node pool %s: %s", pool_id, err.cause)
        await workflow.wait_condition(lambda: claim.done() or self._no_capacity is not None)
        if not claim.done():
            claim.cancel()
            raise ApplicationError(
                f"no {spec.node_class!r} node could be made: {self._no_capacity}",
                type=Failure.NO_CAPACITY,
                non_retryable=True,
            )
