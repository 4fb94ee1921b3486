"""ExecutionWorkflow: one script, one node slot, durable from submit to recorded cost.

claim a slot on any node of the class (Temporal's matching is the scheduler), then stage,
run and collect on that node's own queue. A node that vanishes shows up as a
schedule-to-start or heartbeat timeout, and the attempt moves to another node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
)

with workflow.unsafe.imports_passed_through():
    from rgrid.activities.control import ControlActivities
    from rgrid.activities.node import NodeActivities
    from rgrid.errors import Failure
    from rgrid.models.control import (
        CacheHit,
        CostInput,
        PlanInput,
    )
    from rgrid.models.execution import AddTagsInput, ExecutionSpec, ExecutionStatus, Phase
    from rgrid.models.node import (
        CollectOutputsInput,
        CollectOutputsResult,
        NodeLease,
        ReleaseNodeInput,
        RunContainerInput,
        RunResult,
        StageInputsInput,
    )
    from rgrid.models.pool import NoCapacity
    from rgrid.workflows import visibility
    from rgrid.workflows.admission import refusal as admission_refusal
    from rgrid.workflows.execution_claim import ClaimSteps
    from rgrid.workflows.execution_reports import LOCAL_RETRY, LOCAL_TIMEOUT, ExecutionReports
    from rgrid.workflows.node_steps import (
        NODE_PICKUP,
        T,
        environment_broken,
        node_lost,
        on_same_node,
    )

NODE_STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_attempts=3,
    non_retryable_error_types=[Failure.USER_INPUT, Failure.UNSAFE_PATH, Failure.NOT_FOUND],
)


class NodeLost(Exception):
    """The leased node stopped answering; the attempt must move elsewhere."""


class EnvironmentLost(NodeLost):
    """rgrid's environment on the node failed before the script started (EnvironmentBroken):
    an infrastructure fault, retried and counted like a lost node."""


@workflow.defn(name="ExecutionWorkflow")
class ExecutionWorkflow(ClaimSteps, ExecutionReports):
    def __init__(self) -> None:
        self._status = ExecutionStatus(execution_id="")
        self._pending_signals: list[asyncio.Future[None]] = []
        self._no_capacity: str | None = None
        self._pool_demand = False
        self._claim_priority = False
        self._visible = False  # sets its own search attributes (histories from before don't)
        self._same_node_first = False
        self._cancel_is_cancel = False
        self._no_node_fails = False

    @workflow.query(name="status")
    def status(self) -> ExecutionStatus:
        return self._status

    @workflow.signal(name="add_tags")
    def add_tags(self, request: AddTagsInput) -> None:
        self._status.tags.update(request.tags)
        if self._visible:
            visibility.upsert_tags(self._status.tags)

    @workflow.signal(name="no_capacity")
    def no_capacity(self, request: NoCapacity) -> None:
        # From the node pool (no node exists or can be made) or the embedded stack's
        # supervisor (every local agent keeps exiting): fail instead of waiting.
        self._no_capacity = request.message

    @workflow.run
    async def run(self, spec: ExecutionSpec) -> ExecutionStatus:
        info = workflow.info()
        self._status = ExecutionStatus(
            execution_id=info.workflow_id,
            script=spec.script.name,
            args=spec.args,
            tags=dict(spec.tags),
            project=spec.project,
            batch_id=spec.batch_id,
            batch_item=spec.batch_item,
            node_class=spec.node_class,
            priority=spec.priority,
            created_at=workflow.now(),
        )
        # Patches are asked before any local activity: asked after one, the marker can land
        # in the next workflow task, where a replay no longer sees it.
        self._pool_demand = spec.pool_id is not None and workflow.patched("node-pool-demand")
        self._claim_priority = workflow.patched("claim-priority")
        self._visible = workflow.patched(visibility.VISIBLE)
        if self._visible:
            visibility.upsert_run(spec)
        self._same_node_first = workflow.patched("same-node-before-lost")
        self._cancel_is_cancel = workflow.patched("cancelled-claim-is-cancel")
        # Fixed nodes: the embedded stack's supervisor says (no_capacity) when it gave up.
        self._no_node_fails = spec.pool_id is None and workflow.patched("no-node-fails-fast")
        # A batch's items were admitted with their batch (running work goes on past a limit).
        admission = spec.batch_id is None and workflow.patched("admission")
        await self._record()
        if admission and (refused := await admission_refusal(spec)) is not None:
            # Refused by a spending limit or the budget: recorded as failed, nothing claimed.
            self._status.phase = Phase.FAILED
            self._status.error = refused.message
            self._status.finished_at = workflow.now()
            await self._record()
            raise ApplicationError(
                refused.message, self._status, type=refused.type, non_retryable=True
            )
        plan = await workflow.execute_local_activity_method(
            ControlActivities.plan,
            PlanInput(execution_id=info.workflow_id, spec=spec),
            start_to_close_timeout=LOCAL_TIMEOUT,
            retry_policy=LOCAL_RETRY,
        )
        self._status.cache_key = plan.cache_key
        if plan.hit is not None:
            return await self._serve_cached(plan.hit)
        try:
            run, outputs, lease = await self._attempts(spec)
        except asyncio.CancelledError:
            self._status.phase = Phase.CANCELLED
            self._status.finished_at = workflow.now()
            await self._finish()
            raise
        except ApplicationError as err:
            self._status.phase = Phase.FAILED
            self._status.error = err.message
            self._status.finished_at = workflow.now()
            await self._finish()
            raise
        cost = await workflow.execute_local_activity_method(
            ControlActivities.compute_cost,
            CostInput(
                lease=lease,
                slot_seconds=run.duration_s,
                execution_id=info.workflow_id,
                started_at=run.started_at,
                finished_at=run.finished_at,
            ),
            start_to_close_timeout=LOCAL_TIMEOUT,
            retry_policy=LOCAL_RETRY,
        )
        self._status.cost_microns = cost.cost_microns
        self._status.outputs = outputs.outputs
        self._status.exit_code = run.exit_code
        self._status.stderr_tail = run.stderr_tail
        self._status.started_at = run.started_at
        self._status.finished_at = run.finished_at
        if run.timed_out:
            self._status.phase = Phase.TIMED_OUT
            self._status.error = f"timed out after {spec.timeout_s} s"
        elif run.exit_code == 0:
            self._status.phase = Phase.SUCCEEDED
        else:
            self._status.phase = Phase.FAILED
            self._status.error = visibility.script_failed(
                run.exit_code, run.stderr_tail, spec.resources.memory_mb
            )
        await self._finish()
        if self._status.phase is not Phase.SUCCEEDED:
            # The workflow fails (red in the Web UI); the details carry the full status.
            raise ApplicationError(
                self._status.error or "failed",
                self._status,
                type=Failure.SCRIPT_TIMED_OUT if run.timed_out else Failure.SCRIPT_FAILED,
                non_retryable=True,
            )
        return self._status

    async def _serve_cached(self, hit: CacheHit) -> ExecutionStatus:
        """An identical run succeeded before and its outputs are still stored: answer
        with them, at no cost, without touching a node."""
        self._status = hit.answer(self._status, workflow.now())
        await self._finish()
        return self._status

    async def _attempts(
        self, spec: ExecutionSpec
    ) -> tuple[RunResult, CollectOutputsResult, NodeLease]:
        """Claim a node and run there; on a lost node, or a failure the user asked to retry,
        go again, at most max_node_attempts + retries times."""
        node_losses = 0
        script_retries = 0
        while True:
            self._status.attempts += 1
            self._status.phase = Phase.QUEUED
            lease = await self._claim(spec)
            try:
                may_retry = script_retries < spec.retries
                run, outputs = await self._run_on(lease, spec, may_retry)
            except NodeLost as lost:
                node_losses += 1
                workflow.logger.warning("node lost: %s", lost)
                if node_losses >= spec.max_node_attempts:
                    raise ApplicationError(
                        f"gave up after {node_losses} lost nodes: {lost}",
                        type=Failure.NODES_LOST,
                        non_retryable=True,
                    ) from None
                continue
            if run.exit_code not in (0, None) and script_retries < spec.retries:
                script_retries += 1
                continue
            return run, outputs, lease

    async def _run_on(
        self, lease: NodeLease, spec: ExecutionSpec, may_retry: bool
    ) -> tuple[RunResult, CollectOutputsResult]:
        execution_id = self._status.execution_id
        try:
            self._status.phase = Phase.STAGING
            self._show()
            await workflow.execute_activity_method(
                NodeActivities.stage_inputs,
                StageInputsInput(
                    lease=lease, execution_id=execution_id, script=spec.script, inputs=spec.inputs
                ),
                task_queue=lease.queue,
                schedule_to_start_timeout=NODE_PICKUP,
                start_to_close_timeout=timedelta(minutes=30),
                retry_policy=NODE_STEP_RETRY,
            )
            self._status.phase = Phase.RUNNING
            self._status.started_at = workflow.now()
            await self._record()
            run = await self._same_node(
                spec,
                lambda pickup: workflow.execute_activity_method(
                    NodeActivities.run_container,
                    RunContainerInput(lease=lease, execution_id=execution_id, spec=spec),
                    task_queue=lease.queue,
                    schedule_to_start_timeout=pickup,
                    # The runtime enforces the script's own timeout; this bounds its env build.
                    start_to_close_timeout=timedelta(seconds=spec.timeout_s + 1800),
                    heartbeat_timeout=timedelta(seconds=spec.heartbeat_timeout_s),
                    retry_policy=RetryPolicy(maximum_attempts=1),
                    cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                ),
            )
            self._status.runtime = run.runtime
            self._status.phase = Phase.COLLECTING
            self._status.exit_code = run.exit_code
            self._status.stderr_tail = run.stderr_tail
            self._show()
            failed = run.timed_out or run.exit_code != 0
            if not (may_retry and failed):
                self._report_script_done(failed)
            outputs = await self._same_node(
                spec,
                lambda pickup: workflow.execute_activity_method(
                    NodeActivities.collect_outputs,
                    CollectOutputsInput(lease=lease, execution_id=execution_id),
                    task_queue=lease.queue,
                    schedule_to_start_timeout=pickup,
                    start_to_close_timeout=timedelta(minutes=30),
                    retry_policy=NODE_STEP_RETRY,
                ),
            )
            return run, outputs
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):
                # The workflow was cancelled and the node has killed the script.
                await self._release(lease)
                raise asyncio.CancelledError() from err
            if node_lost(err):
                if self._same_node_first:
                    # Given up on, but perhaps alive: its kept run must not hold the slot.
                    await self._release(lease)
                raise NodeLost(f"{lease.node_id}: {err.cause}") from err
            # Asked only on this failure, which only newer nodes report: older histories
            # never reach it, and a running workflow that did keeps its old outcome.
            if environment_broken(err) and workflow.patched("environment-broken-retry"):
                await self._release(lease)  # the node is fine; its slot is free again
                raise EnvironmentLost(f"{lease.node_id}: {err.cause}") from err
            await self._release(lease)
            if isinstance(err.cause, ApplicationError):
                raise ApplicationError(
                    err.cause.message, type=err.cause.type, non_retryable=True
                ) from err
            raise ApplicationError(
                str(err.cause or err), type=Failure.NODE_ERROR, non_retryable=True
            ) from err
        except asyncio.CancelledError:
            await self._release(lease)
            raise

    async def _same_node(self, spec: ExecutionSpec, step: Callable[[timedelta], Awaitable[T]]) -> T:
        """A step after the script started: asked of the same node again when it times
        out (node_steps.py), in histories that have the patch."""
        if not self._same_node_first:
            return await step(NODE_PICKUP)
        return await on_same_node(step, spec.heartbeat_timeout_s)

    async def _release(self, lease: NodeLease) -> None:
        """Free the slot now rather than at lease expiry; best effort, the node may be gone."""
        try:
            await workflow.execute_activity_method(
                NodeActivities.release_node,
                ReleaseNodeInput(lease=lease),
                task_queue=lease.queue,
                schedule_to_start_timeout=timedelta(seconds=10),
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except ActivityError:
            pass
