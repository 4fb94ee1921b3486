"""LimitWatchWorkflow: the one limit watch of a namespace (id `limit-watch`).

Spend grows while nodes idle, not only when runs end, so someone must look on a timer.
As a workflow with a fixed id, started with USE_EXISTING by every control worker, there
is exactly one, whichever replicas run, and it moves to a live replica when one dies.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from rgrid.activities.limits import LimitActivities
    from rgrid.models.money import CheckLimitsInput, LimitWatchInput

# A bounded history: continue as new after this many checks.
CHECKS_PER_RUN = 200


@workflow.defn(name="LimitWatchWorkflow")
class LimitWatchWorkflow:
    @workflow.run
    async def run(self, request: LimitWatchInput) -> None:
        for _ in range(CHECKS_PER_RUN):
            try:
                await workflow.execute_activity_method(
                    LimitActivities.check_limits,
                    CheckLimitsInput(),
                    start_to_close_timeout=timedelta(seconds=60),
                    retry_policy=RetryPolicy(maximum_attempts=3),
                )
            except ActivityError as err:  # a bad pass must not end the watch
                workflow.logger.warning("limit check failed: %s", err.cause)
            await workflow.sleep(timedelta(seconds=request.every_s))
        workflow.continue_as_new(request)
