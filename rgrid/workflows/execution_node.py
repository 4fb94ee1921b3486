"""How an ExecutionWorkflow works on the node it claimed: one `execute` step (stage, run
and collect) in today's histories, the three steps apart in older ones, and what a node's
failure means for the attempt. Deterministic workflow code, a base of ExecutionWorkflow."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.types import MethodAsyncSingleParam

with workflow.unsafe.imports_passed_through():
    from rgrid.activities.node import NodeActivities
    from rgrid.errors import Failure
    from rgrid.models.execution import ExecutionSpec, Phase
    from rgrid.models.node import (
        CollectOutputsInput,
        CollectOutputsResult,
        NodeLease,
        ReleaseNodeInput,
        RunContainerInput,
        RunResult,
        StageInputsInput,
    )
    from rgrid.workflows.execution_reports import ExecutionReports
    from rgrid.workflows.node_steps import (
        NODE_PICKUP,
        T,
        environment_broken,
        node_lost,
        not_served,
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


class NodeSteps(ExecutionReports):
    """The node half of ExecutionWorkflow (reporting as it goes); the flags are the
    workflow's patches."""

    _same_node_first: bool
    _one_step: bool  # SHAPE_2: execute, and every earlier patch applies

    async def _run_on(
        self, lease: NodeLease, spec: ExecutionSpec, may_retry: bool
    ) -> tuple[RunResult, CollectOutputsResult]:
        try:
            if self._one_step:
                try:
                    return await self._execute(lease, spec)
                except ActivityError as err:
                    if not not_served(err):
                        raise
                    # A node agent from before execute (a pool's node lives on through an
                    # upgrade of the control plane): the three steps it does serve.
                    workflow.logger.info("%s has no execute step: three steps", lease.node_id)
            return await self._three_steps(lease, spec, may_retry)
        except ActivityError as err:
            await self._node_failed(lease, err)
            raise  # not reached: _node_failed raises
        except asyncio.CancelledError:
            await self._release(lease)
            raise

    async def _execute(
        self, lease: NodeLease, spec: ExecutionSpec
    ) -> tuple[RunResult, CollectOutputsResult]:
        """Stage, run and collect on the node as one activity: one task hop, not three."""
        execution_id = self._status.execution_id
        self._status.phase = Phase.RUNNING
        self._status.started_at = workflow.now()
        await self._record()
        # Staging and collecting heartbeat too: the bound covers them and the env build.
        done = await self._following_the_run(
            NodeActivities.execute,
            RunContainerInput(lease=lease, execution_id=execution_id, spec=spec),
            timedelta(seconds=spec.timeout_s + 3600),
        )
        self._status.runtime = done.run.runtime
        return done.run, done.outputs

    async def _three_steps(
        self, lease: NodeLease, spec: ExecutionSpec, may_retry: bool
    ) -> tuple[RunResult, CollectOutputsResult]:
        """Histories from before SHAPE_2: stage, run and collect as activities apart."""
        execution_id = self._status.execution_id
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
        # The runtime enforces the script's own timeout; the bound covers its env build.
        run = await self._following_the_run(
            NodeActivities.run_container,
            RunContainerInput(lease=lease, execution_id=execution_id, spec=spec),
            timedelta(seconds=spec.timeout_s + 1800),
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

    async def _following_the_run(
        self,
        step: MethodAsyncSingleParam[NodeActivities, RunContainerInput, T],
        request: RunContainerInput,
        start_to_close: timedelta,
    ) -> T:
        """A node step that follows the script's run (execute, run_container): it
        heartbeats, is tried once per ask, is asked of the same node again on a timeout,
        and a cancel waits until the node has killed the script."""
        spec = request.spec
        return await self._same_node(
            spec,
            lambda pickup: workflow.execute_activity_method(
                step,
                request,
                task_queue=request.lease.queue,
                schedule_to_start_timeout=pickup,
                start_to_close_timeout=start_to_close,
                heartbeat_timeout=timedelta(seconds=spec.heartbeat_timeout_s),
                retry_policy=RetryPolicy(maximum_attempts=1),
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            ),
        )

    async def _node_failed(self, lease: NodeLease, err: ActivityError) -> None:
        """Raise what a node step's failure means for the attempt."""
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
        if environment_broken(err) and (
            self._one_step or workflow.patched("environment-broken-retry")
        ):
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
