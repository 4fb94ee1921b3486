"""Admission asked from workflow code: the local activity that applies spending limits and
budgets to new work, and the ApplicationError a refusal raises (deterministic: the verdict
comes from the activity's recorded result)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from rgrid.activities.admission import AdmissionActivities
    from rgrid.models.control import AdmitInput
    from rgrid.models.execution import ExecutionSpec


async def refusal(
    spec: ExecutionSpec,
    what: str = "new runs",
    runs: int = 1,
    parallel: int = 1,
    with_budget: bool = True,
) -> ApplicationError | None:
    """The error refusing `runs` runs of `spec`, or None when they may start."""
    verdict = await workflow.execute_local_activity_method(
        AdmissionActivities.admit,
        AdmitInput(
            project=spec.project,
            what=what,
            budget_microns=spec.budget_microns if with_budget else None,
            script_sha256=spec.script.sha256,
            script_name=spec.script.name,
            runs=runs,
            parallel=parallel,
            timeout_s=spec.timeout_s,
            node_class=spec.node_class,
        ),
        start_to_close_timeout=timedelta(seconds=30),
        retry_policy=RetryPolicy(maximum_attempts=5),
    )
    if verdict.refused is None:
        return None
    return ApplicationError(verdict.message, type=verdict.refused, non_retryable=True)
