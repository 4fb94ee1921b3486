"""ExecutionWorkflow: one script, one node slot, durable from submit to recorded cost.

Claim a slot on any node of the class (Temporal's matching is the scheduler), then stage,
run and collect, as one `execute` activity, on that node's own queue. A node that vanishes
shows up as a schedule-to-start or heartbeat timeout, and the attempt moves to another node.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from rgrid.activities.control import ControlActivities
    from rgrid.errors import Failure
    from rgrid.models.control import CacheHit, CostInput, FinishInput, PlanInput
    from rgrid.models.execution import AddTagsInput, ExecutionSpec, ExecutionStatus, Phase
    from rgrid.models.node import CollectOutputsResult, NodeLease, RunResult
    from rgrid.models.pool import NoCapacity
    from rgrid.workflows import visibility
    from rgrid.workflows.admission import refusal as admission_refusal
    from rgrid.workflows.execution_claim import ClaimSteps
    from rgrid.workflows.execution_node import NodeLost, NodeSteps
    from rgrid.workflows.execution_reports import LOCAL_RETRY, LOCAL_TIMEOUT

# One patch for what every patch before it changed, and one node step (execute) for
# stage, run and collect: a run's history is about half as long as with the seven.
SHAPE_2 = "shape-2"


# Not sandboxed in workers: the sandbox re-imports this module for every run, a fifth of
# the control worker's CPU per batch item. Replays in the tests run it sandboxed, so a
# nondeterministic call still fails there (tests/unit/test_replay.py).
@workflow.defn(name="ExecutionWorkflow", sandboxed=False)
class ExecutionWorkflow(ClaimSteps, NodeSteps):
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
        self._one_step = False
        self._batch_awaits_result = False
        self._report_asked = False  # the batch asked for its item_done signal after all

    @workflow.query(name="status")
    def status(self) -> ExecutionStatus:
        return self._status

    @workflow.signal(name="add_tags")
    def add_tags(self, request: AddTagsInput) -> None:
        self._status.tags.update(request.tags)
        if self._visible:
            visibility.upsert_tags(self._status.tags)

    @workflow.signal(name="report_by_signal")
    def report_by_signal(self) -> None:
        # From the batch before it continues as new: its next run cannot await this one.
        self._report_asked = True

    @workflow.signal(name="no_capacity")
    def no_capacity(self, request: NoCapacity) -> None:
        # From the node pool (no node exists or can be made) or the embedded stack's
        # supervisor (every local agent keeps exiting): fail instead of waiting.
        self._no_capacity = request.message

    @workflow.run
    async def run(self, spec: ExecutionSpec) -> ExecutionStatus:
        info = workflow.info()
        # Input, not a patch: a batch from before it awaited results starts children without.
        self._batch_awaits_result = spec.batch_awaits_result
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
        # A batch's child says its shape in its spec, and asks no patch (no marker).
        self._one_step = (spec.shape or 0) >= 3 or workflow.patched(SHAPE_2)
        if self._one_step:
            self._pool_demand = spec.pool_id is not None
            self._claim_priority = self._visible = True
            self._same_node_first = self._cancel_is_cancel = True
            self._no_node_fails = spec.pool_id is None
            admission = spec.batch_id is None
            visibility.upsert_run_missing(spec)
        else:
            admission = self._patches_before_shape_2(spec)
            await self._record()  # SHAPE_2 records in plan, after admission
        if admission and (refused := await admission_refusal(spec)) is not None:
            # Refused by a spending limit or the budget: recorded as failed, nothing claimed.
            self._status.phase = Phase.FAILED
            self._status.error = refused.message
            self._status.finished_at = workflow.now()
            await self._record()
            raise ApplicationError(
                refused.message, self._status, type=refused.type, non_retryable=True
            )
        self._show()
        plan = await workflow.execute_local_activity_method(
            ControlActivities.plan,
            PlanInput(
                execution_id=info.workflow_id,
                spec=spec,
                status=self._status if self._one_step else None,
            ),
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
        await self._priced(lease, run)
        if self._status.phase is not Phase.SUCCEEDED:
            # The workflow fails (red in the Web UI); the details carry the full status.
            raise ApplicationError(
                self._status.error or "failed",
                self._status,
                type=Failure.SCRIPT_TIMED_OUT if run.timed_out else Failure.SCRIPT_FAILED,
                non_retryable=True,
            )
        return self._status

    def _patches_before_shape_2(self, spec: ExecutionSpec) -> bool:
        """The patches histories from before SHAPE_2 asked, one by one; whether the run
        is admitted by itself (a batch's items were admitted with their batch)."""
        self._pool_demand = spec.pool_id is not None and workflow.patched("node-pool-demand")
        self._claim_priority = workflow.patched("claim-priority")
        self._visible = workflow.patched(visibility.VISIBLE)
        if self._visible:
            visibility.upsert_run(spec)
        self._same_node_first = workflow.patched("same-node-before-lost")
        self._cancel_is_cancel = workflow.patched("cancelled-claim-is-cancel")
        # Fixed nodes: the embedded stack's supervisor says (no_capacity) when it gave up.
        self._no_node_fails = spec.pool_id is None and workflow.patched("no-node-fails-fast")
        return spec.batch_id is None and workflow.patched("admission")

    async def _priced(self, lease: NodeLease, run: RunResult) -> None:
        """Price the ended run, record it and tell its batch (SHAPE_2: one local activity
        for the first two)."""
        cost_input = CostInput(
            lease=lease,
            slot_seconds=run.duration_s,
            execution_id=self._status.execution_id,
            started_at=run.started_at,
            finished_at=run.finished_at,
        )
        if self._one_step:
            self._show()
            cost = await workflow.execute_local_activity_method(
                ControlActivities.finish,
                FinishInput(status=self._status, cost=cost_input),
                start_to_close_timeout=LOCAL_TIMEOUT,
                retry_policy=LOCAL_RETRY,
            )
            self._status.cost_microns = cost.cost_microns
            await self._report_done()
            return
        cost = await workflow.execute_local_activity_method(
            ControlActivities.compute_cost,
            cost_input,
            start_to_close_timeout=LOCAL_TIMEOUT,
            retry_policy=LOCAL_RETRY,
        )
        self._status.cost_microns = cost.cost_microns
        await self._finish()

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
