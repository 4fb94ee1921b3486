"""What an ExecutionWorkflow tells others about itself: the ledger row (record), the Web
UI's current details, and its batch (script done, item done). Deterministic workflow code,
a base of ExecutionWorkflow."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from rgrid.activities.control import ControlActivities
    from rgrid.models.batch import ItemDone, ItemScriptDone
    from rgrid.models.control import RecordInput
    from rgrid.models.execution import ExecutionStatus
    from rgrid.workflows import visibility

LOCAL_TIMEOUT = timedelta(seconds=30)
LOCAL_RETRY = RetryPolicy(maximum_attempts=5)


class ExecutionReports:
    """The reporting half of ExecutionWorkflow; it holds the status it reports."""

    _status: ExecutionStatus
    _pending_signals: list[asyncio.Future[None]]
    _batch_awaits_result: bool
    _report_asked: bool  # the batch wants the signal after all (it continues as new)

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
        await self._report_done()

    async def _report_done(self) -> None:
        """A batch's child tells its batch how it ended (recorded already)."""
        parent = workflow.info().parent
        if parent is None or self._status.batch_item is None:
            return
        # A report the batch could not take is no reason to fail this execution.
        await asyncio.gather(*self._pending_signals, return_exceptions=True)
        if self._batch_awaits_result and not self._report_asked:
            return  # the batch reads how it ended from this workflow's result
        try:
            # By workflow id only: the batch may have continued as new since.
            await workflow.get_external_workflow_handle(parent.workflow_id).signal(
                "item_done", ItemDone.of(self._status)
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
