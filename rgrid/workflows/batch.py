"""BatchWorkflow: one child ExecutionWorkflow per input file, at most `parallel` at once.

After Temporal's sliding-window batch sample: the batch continues as new every `page_size`
children so a 10,000-file batch keeps a bounded history. It awaits the results of the
children it started (ITEM_RESULTS); before it continues as new, those still running are
asked to report their end by signal to the batch's workflow id instead, as every child did
before ITEM_RESULTS (duplicates are ignored). Items live in a manifest in storage, read a
page at a time; only indices and counts are carried along.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, CancelledError, ChildWorkflowError, FailureError

with workflow.unsafe.imports_passed_through():
    from rgrid import names
    from rgrid.activities.control import ControlActivities
    from rgrid.errors import Failure
    from rgrid.models.batch import (
        BatchInput,
        BatchItem,
        BatchProgress,
        BatchState,
        ItemDone,
        ItemScriptDone,
        RetryFailedInput,
        RetryFailedResult,
        SetParallelInput,
    )
    from rgrid.models.control import LoadItemsInput
    from rgrid.models.execution import SHAPE, ExecutionSpec, ExecutionStatus, Phase
    from rgrid.workflows import visibility
    from rgrid.workflows.admission import refusal as admission_refusal

# Children report by their result, not a signal: per item one workflow task and five
# history events fewer in the child, the same number in the batch.
ITEM_RESULTS = "item-results"


@workflow.defn(name="BatchWorkflow")
class BatchWorkflow:
    # State comes from the input in __init__, so signals delivered with the start
    # (a pause sent right away) act on it instead of being overwritten by run().
    @workflow.init
    def __init__(self, request: BatchInput) -> None:
        self._spec = request.spec
        self._state = request.state or BatchState(parallel=request.spec.parallel)
        self._items: dict[int, BatchItem] = {}
        self._started_this_run = 0
        self._starts: list[asyncio.Future[None]] = []
        self._visible = False  # children get summaries (histories from before: none)
        self._by_result = False  # ITEM_RESULTS
        self._awaited: dict[str, asyncio.Future[None]] = {}  # execution id -> its result

    @workflow.run
    async def run(self, request: BatchInput) -> BatchProgress:
        spec = self._spec
        # Asked before anything else: asked after a local activity, the marker can land in
        # the next workflow task, where a replay no longer sees it (a nondeterminism error).
        concurrent_starts = workflow.patched("concurrent-child-starts")
        self._visible = workflow.patched(visibility.VISIBLE)
        self._by_result = workflow.patched(ITEM_RESULTS)
        if self._visible:
            visibility.upsert_batch(spec)
        # A batch started (or started again to retry its failed items) is admitted once;
        # its continuations are running work, which goes on past a limit.
        admission = workflow.info().continued_run_id is None and workflow.patched("admission")
        if self._state.started_at is None:
            self._state.started_at = workflow.now()
        try:
            if admission:  # inside: a batch cancelled while it is admitted ends cancelled
                fresh = not (self._state.retry_queue or self._state.next_index)
                await self._admit("new runs" if fresh else "retries", fresh)
            while True:
                await workflow.wait_condition(lambda: self._can_start() or self._finished())
                if self._finished():
                    break
                if self._started_this_run >= spec.page_size:
                    # Starts and handlers must finish first, or their effect would be lost.
                    await asyncio.gather(*self._starts)
                    await self._hand_over_reports()
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    workflow.continue_as_new(BatchInput(spec=spec, state=self._state))
                start = await self._start_next()
                if concurrent_starts:
                    # Several starts go out in one workflow task instead of one per task.
                    self._starts.append(asyncio.ensure_future(start))
                else:
                    await start
        except asyncio.CancelledError:
            # State only, no command: a query on the closed batch replays to here too.
            self._state.cancelled = True
            await self._cancel_running()
            raise
        await asyncio.gather(*self._starts)
        await workflow.wait_condition(workflow.all_handlers_finished)
        final = self.progress()
        final.state = self._state
        return final

    @workflow.query(name="progress")
    def progress(self) -> BatchProgress:
        state, total = self._state, self._spec.total
        finished = state.succeeded + state.cached + len(state.failed)
        unfinished = len(state.running) + len(state.finishing)
        return BatchProgress(
            batch_id=workflow.info().workflow_id,
            total=total,
            queued=max(total - finished - unfinished, 0),
            running=len(state.running),
            collecting=len(state.finishing),
            succeeded=state.succeeded,
            failed=len(state.failed),
            cached=state.cached,
            cost_microns=state.cost_microns,
            parallel=state.parallel,
            paused=state.paused,
            stopped=state.stopped,
            done=self._finished() or state.cancelled,
            cancelled=state.cancelled,
            started_at=state.started_at,
        )

    @workflow.signal(name="item_script_done")
    def item_script_done(self, report: ItemScriptDone) -> None:
        # Its script has ended: its place in the window is free while it collects.
        state = self._state
        if state.running.get(report.index) == report.execution_id:
            state.finishing[report.index] = state.running.pop(report.index)
            if report.failed and self._spec.fail_fast:
                state.stopped = True

    @workflow.signal(name="item_done")
    def item_done(self, report: ItemDone) -> None:
        state = self._state
        if state.running.get(report.index) == report.execution_id:
            del state.running[report.index]
        elif state.finishing.get(report.index) == report.execution_id:
            del state.finishing[report.index]
        else:
            return  # a duplicate, or a report from an attempt we no longer wait for
        state.cost_microns += report.cost_microns
        if report.cached:
            state.cached += 1
        elif report.phase is Phase.SUCCEEDED:
            state.succeeded += 1
        else:
            state.failed.append(report.index)
            if self._spec.fail_fast:
                state.stopped = True
        self._show()

    def _show(self) -> None:
        # Not a command: the Web UI reads it live through the workflow's metadata query.
        workflow.set_current_details(visibility.batch_details(self.progress()))

    @workflow.signal(name="set_parallel")
    def set_parallel(self, request: SetParallelInput) -> None:
        # Lowering it starts nothing new until enough running items finish.
        self._state.parallel = max(1, request.parallel)

    @workflow.signal(name="pause")
    def pause(self) -> None:
        self._state.paused = True

    @workflow.signal(name="resume")
    def resume(self) -> None:
        self._state.paused = False

    @workflow.update(name="retry_failed")
    async def retry_failed(self, request: RetryFailedInput) -> RetryFailedResult:
        # However the update was sent (rgrid retry, the temporal CLI), a used-up limit
        # refuses it: the update fails and nothing is requeued.
        if workflow.patched("retry-admission"):
            await self._admit("retries", with_budget=False)
        state = self._state
        requeued = list(state.failed)
        state.retry_queue.extend(requeued)
        state.failed.clear()
        state.stopped = False
        return RetryFailedResult(requeued=len(requeued))

    @retry_failed.validator
    def _validate_retry(self, request: RetryFailedInput) -> None:
        if not self._state.failed:
            # A user's request that asking again will not change (a rejected update
            # writes no history, so this needs no patch).
            raise ApplicationError(
                "the batch has no failed items to retry",
                type=Failure.NOTHING_TO_RETRY,
                non_retryable=True,
            )

    async def _admit(self, what: str, with_budget: bool) -> None:
        """Raise (failing the batch, or the update) when the project's spending limit is
        used up or, for a new batch, the estimate of all its runs is above its budget."""
        spec = self._spec
        refused = await admission_refusal(
            spec.template, what, spec.total, spec.parallel, with_budget
        )
        if refused is not None:
            raise refused

    def _pending(self) -> bool:
        return bool(self._state.retry_queue) or self._state.next_index < self._spec.total

    def _can_start(self) -> bool:
        state = self._state
        return (
            not state.paused
            and not state.stopped
            and len(state.running) < state.parallel
            and self._pending()
        )

    def _finished(self) -> bool:
        state = self._state
        return not state.running and not state.finishing and (state.stopped or not self._pending())

    async def _start_next(self) -> Coroutine[Any, Any, None]:
        """Take the next item and count it as running; returns the start of its child."""
        spec, state = self._spec, self._state
        if state.retry_queue:
            index = state.retry_queue.pop(0)
            state.retries[index] = state.retries.get(index, 0) + 1
        else:
            index = state.next_index
            state.next_index += 1
        item = await self._item(index)
        execution_id = names.item_execution_id(
            workflow.info().workflow_id, index, state.retries.get(index, 0)
        )
        child = spec.template.model_copy(
            update={
                "args": [*spec.template.args, item.input.name],
                "inputs": [*spec.template.inputs, item.input],
                "batch_id": workflow.info().workflow_id,
                "batch_item": index,
                "batch_awaits_result": self._by_result,
                "shape": SHAPE,  # the child asks no patch: two events fewer per item
            }
        )
        state.running[index] = execution_id
        self._started_this_run += 1
        self._show()
        return self._start_child(child, execution_id, index)

    async def _start_child(self, child: ExecutionSpec, execution_id: str, index: int) -> None:
        try:
            handle = await workflow.start_child_workflow(
                "ExecutionWorkflow",
                child,
                id=execution_id,
                task_queue=workflow.info().task_queue,
                # Continue-as-new closes this run; its children must live on.
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                # All of them: the child need not set them itself (one command less).
                search_attributes=visibility.run_attributes(child),
                static_summary=visibility.run_summary(child) if self._visible else None,
                result_type=ExecutionStatus,
            )
        except FailureError:
            # Already started (a retried start after a worker crash): its report will come.
            workflow.logger.warning("child %s was already started", execution_id)
            return
        if self._by_result:
            self._awaited[execution_id] = asyncio.ensure_future(self._take_result(handle, index))

    async def _take_result(
        self, handle: workflow.ChildWorkflowHandle[Any, ExecutionStatus], index: int
    ) -> None:
        """The child's end, from its result: the item_done it would have signalled."""
        try:
            report = ItemDone.of(await handle)
        except ChildWorkflowError as err:
            # Failed (the status rides in the error's details), or cancelled or terminated.
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.details:
                report = ItemDone.of(ExecutionStatus.model_validate(cause.details[0]))
            else:
                phase = Phase.CANCELLED if isinstance(cause, CancelledError) else Phase.FAILED
                report = ItemDone(index=index, execution_id=handle.id, phase=phase)
        self.item_done(report)

    async def _hand_over_reports(self) -> None:
        """Before continuing as new: the next run cannot await this run's children, so each
        one still running is asked to report by signal. The signal fails only for a child
        that has ended, whose result then comes to this run."""

        async def hand_over(execution_id: str, result: asyncio.Future[None]) -> None:
            try:
                await workflow.get_external_workflow_handle(execution_id).signal("report_by_signal")
            except FailureError:
                await result

        await asyncio.gather(
            *(hand_over(e, result) for e, result in self._awaited.items() if not result.done())
        )

    async def _item(self, index: int) -> BatchItem:
        """The item, loading the page it starts when it is not cached."""
        if index not in self._items:
            self._items.clear()  # one page at a time keeps the worker's memory flat
            end = min(index + self._spec.page_size, self._spec.total)
            # In order, load the page from here; a retried item alone.
            in_order = index == self._state.next_index - 1
            indices = list(range(index, end)) if in_order else [index]
            loaded = await workflow.execute_local_activity_method(
                ControlActivities.load_items,
                LoadItemsInput(manifest_key=self._spec.manifest_key, indices=indices),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=5),
            )
            self._items = {item.index: item for item in loaded.items}
        return self._items[index]

    async def _cancel_running(self) -> None:
        """Cancel the children still running; start no more."""
        self._state.stopped = True
        for execution_id in [*self._state.running.values(), *self._state.finishing.values()]:
            try:
                await workflow.get_external_workflow_handle(execution_id).cancel()
            except FailureError:
                pass  # it ended meanwhile
