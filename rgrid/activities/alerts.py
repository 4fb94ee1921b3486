"""The alert activity: one JSON POST to a limit's webhook (run by the control worker)."""

from __future__ import annotations

import aiohttp
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from rgrid import names
from rgrid.errors import Failure
from rgrid.models.money import WebhookInput
from rgrid.models.node import Ack

log = structlog.get_logger()

# Statuses worth asking again: the receiver is busy or timed out, not refusing.
_RETRYABLE_4XX = {408, 425, 429}


class AlertActivities:
    """Delivers alerts; the engine retries a failed delivery (see AlertWorkflow)."""

    def __init__(self, timeout_s: float = 10.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    @activity.defn(name=names.SEND_WEBHOOK)
    async def send_webhook(self, request: WebhookInput) -> Ack:
        """POST the payload as JSON; a 2xx answer delivers it."""
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as session,
                session.post(request.url, json=request.payload) as response,
            ):
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApplicationError(
                f"webhook {request.url} did not answer: {exc}", type=Failure.WEBHOOK_UNREACHABLE
            ) from exc
        if status < 300:
            log.info("webhook_delivered", url=request.url, status=status)
            return Ack()
        retryable = status >= 500 or status in _RETRYABLE_4XX
        raise ApplicationError(
            f"webhook {request.url} answered {status}",
            type=Failure.WEBHOOK_FAILED if retryable else Failure.WEBHOOK_REJECTED,
            non_retryable=not retryable,
        )
