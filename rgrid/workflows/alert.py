"""AlertWorkflow: tell a limit's webhook that the limit crossed a threshold, once.

Its id names the limit, period and threshold (`alert-<key>`), so a crossing noticed twice
starts it once. The POST is an activity the engine retries with backoff for up to a day:
a webhook that is down delays the alert, never a run.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from rgrid.activities.alerts import AlertActivities
    from rgrid.errors import Failure
    from rgrid.models.money import LimitAlert, WebhookInput
    from rgrid.models.node import Ack

WEBHOOK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    # A 4xx other than 408/429 means the receiver refuses this payload: asking again won't help.
    non_retryable_error_types=[Failure.WEBHOOK_REJECTED],
)


@workflow.defn(name="AlertWorkflow")
class AlertWorkflow:
    @workflow.run
    async def run(self, alert: LimitAlert) -> Ack:
        workflow.logger.warning("limit crossed: %s at %s%%", alert.project, alert.threshold_percent)
        if alert.webhook:
            payload = {
                "event": "rgrid.limit_crossed",
                **alert.model_dump(mode="json", exclude={"webhook"}),
            }
            await workflow.execute_activity_method(
                AlertActivities.send_webhook,
                WebhookInput(url=alert.webhook, payload=payload),
                start_to_close_timeout=timedelta(seconds=15),
                schedule_to_close_timeout=timedelta(days=1),
                retry_policy=WEBHOOK_RETRY,
            )
        return Ack()
