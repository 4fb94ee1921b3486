"""ExecutionWorkflow: one script, one node slot, durable from submit to recorded cost.

claim a slot on any node of the class (Temporal's matching is the scheduler), then stage,
run and collect on that node's own queue. A node that vanishes shows up as a
schedule-to-start or heartbeat timeout, and the attempt moves to another node.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    FailureError,
    TimeoutError,
)

with workflow.unsafe.imports_passed_through():
    from rgrid import names
    from rgrid.activities.control import ControlActivities
    from rgrid.activities.node import NodeActivities
    from rgrid.activities.provisioning import ProvisioningActivities
    from rgrid.errors import Failure
    from rgrid.models.batch import ItemDone, ItemScriptDone
    from rgrid.models.control import (
        CacheHit,
        CostInput,
        PlanInput,
        RecordInput,
    )
    from rgrid.models.execution import AddTagsInput, ExecutionSpec, ExecutionStatus, Phase
    from rgrid.models.node import (
        ClaimNodeInput,
        CollectOutputsInput,
        CollectOutputsResult,
        NodeLease,
        ReleaseNodeInput,
        RunContainerInput,
        RunResult,
        StageInputsInput,
    )
    from rgrid.models.pool import Demand, DemandInput, NoCapacity
    from rgrid.workflows import visibility

# Work pinned to a node must start promptly: a node that holds our lease polls its queue.
NODE_PICKUP = timedelta(seconds=30)
LOCAL_TIMEOUT = timedelta(seconds=30)
LOCAL_RETRY = RetryPolicy(maximum_attempts=5)
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
class ExecutionWorkflow:
    def __init__(self) -> None:
        self._status = ExecutionStatus(execution_id="")
        self._pending_signals: list[asyncio.Future[None]] = []
        self._no_capacity: str | None = None
        self._pool_demand = False
        self._claim_priority = False
        self._visible = False  # sets its own search attributes (histories from before don't)

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
        # From the node pool: no node exists or can be made; fail instead of waiting.
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
        await self._record()
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
        self._status.phase = Phase.SUCCEEDED
        self._status.cached = True
        self._status.cached_from = hit.execution_id
        self._status.outputs = hit.outputs
        self._status.exit_code = 0
        self._status.finished_at = workflow.now()
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
        try:
            lease = await claim
        except ActivityError as err:
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
            run = await workflow.execute_activity_method(
                NodeActivities.run_container,
                RunContainerInput(lease=lease, execution_id=execution_id, spec=spec),
                task_queue=lease.queue,
                schedule_to_start_timeout=NODE_PICKUP,
                # The runtime enforces the script's own timeout; this bounds building its env.
                start_to_close_timeout=timedelta(seconds=spec.timeout_s + 1800),
                heartbeat_timeout=timedelta(seconds=spec.heartbeat_timeout_s),
                retry_policy=RetryPolicy(maximum_attempts=1),
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
            self._status.runtime = run.runtime
            self._status.phase = Phase.COLLECTING
            self._status.exit_code = run.exit_code
            self._status.stderr_tail = run.stderr_tail
            self._show()
            failed = run.timed_out or run.exit_code != 0
            if not (may_retry and failed):
                self._report_script_done(failed)
            outputs = await workflow.execute_activity_method(
                NodeActivities.collect_outputs,
                CollectOutputsInput(lease=lease, execution_id=execution_id),
                task_queue=lease.queue,
                schedule_to_start_timeout=NODE_PICKUP,
                start_to_close_timeout=timedelta(minutes=30),
                retry_policy=NODE_STEP_RETRY,
            )
            return run, outputs
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):
                # The workflow was cancelled and the node has killed the script.
                await self._release(lease)
                raise asyncio.CancelledError() from err
            if _node_lost(err):
                raise NodeLost(f"{lease.node_id}: {err.cause}") from err
            # Asked only on this failure, which only newer nodes report: older histories
            # never reach it, and a running workflow that did keeps its old outcome.
            if _environment_broken(err) and workflow.patched("environment-broken-retry"):
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

    def _report_script_done(self, failed: bool) -> None:
        """Tell the batch the script has ended, so it can start the next item while this
        one collects its outputs (the next claim then waits for this slot, not for the
        whole wind-down). Sent alongside the collect command, not awaited before it."""
        parent = workflow.info().parent
        if parent is None or self._status.batch_item is None:
            return
        if not workflow.patched("report-script-done"):
            return  # histories recorded before this report existed
        signal = workflow.get_external_workflow_handle(parent.workflow_id).signal(
            "item_script_done",
            ItemScriptDone(
                index=self._status.batch_item,
                execution_id=self._status.execution_id,
                failed=failed,
            ),
        )
        self._pending_signals.append(asyncio.ensure_future(signal))

    async def _finish(self) -> None:
        """Record the terminal state; a batch's child also reports it to its batch."""
        await self._record()
        parent = workflow.info().parent
        if parent is None or self._status.batch_item is None:
            return
        # A report the batch could not take is no reason to fail this execution.
        await asyncio.gather(*self._pending_signals, return_exceptions=True)
        report = ItemDone(
            index=self._status.batch_item,
            execution_id=self._status.execution_id,
            phase=self._status.phase,
            exit_code=self._status.exit_code,
            cost_microns=self._status.cost_microns,
            cached=self._status.cached,
        )
        try:
            # By workflow id only: the batch may have continued as new since.
            await workflow.get_external_workflow_handle(parent.workflow_id).signal(
                "item_done", report
            )
        except FailureError:
            workflow.logger.warning("batch %s is gone; report dropped", parent.workflow_id)

    def _show(self) -> None:
        # Not a command: the Web UI reads it live through the workflow's metadata query.
        workflow.set_current_details(visibility.run_details(self._status))

    async def _record(self) -> None:
        self._show()
        await workflow.execute_local_activity_method(
            ControlActivities.record,
            RecordInput(status=self._status),
            start_to_close_timeout=LOCAL_TIMEOUT,
            retry_policy=LOCAL_RETRY,
        )


def _environment_broken(err: ActivityError) -> bool:
    cause = err.cause
    return isinstance(cause, ApplicationError) and cause.type == Failure.ENVIRONMENT_BROKEN


def _node_lost(err: ActivityError) -> bool:
    cause = err.cause
    if isinstance(cause, TimeoutError):
        return True  # schedule-to-start (node gone) or heartbeat (node died mid-run)
    return isinstance(cause, ApplicationError) and cause.type == Failure.LEASE_LOST
