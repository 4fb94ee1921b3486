"""Spending-limit crossings alert once each, and the webhook POST is retried by the engine
until a real local HTTP server takes it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from ulid import ULID

from rgrid.infra.ledger import Ledger
from rgrid.models.execution import ExecutionStatus, Phase
from rgrid.models.money import SpendingLimit
from rgrid.models.pool import NodeRecord, NodeState
from rgrid.money.accounting import month_start
from rgrid.names import alert_workflow_id
from rgrid.worker.limit_watch import check_limits_once
from tests.conftest import free_port
from tests.integration.conftest import record_history

pytestmark = pytest.mark.integration


class FlakyWebhook:
    """Answers `status` (503) to the first `failures` POSTs, then 200; keeps what it was
    sent."""

    def __init__(self, failures: int, status: int = 503) -> None:
        self.failures = failures
        self.status = status
        self.attempts = 0
        self.delivered: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        payload = await request.json()
        if self.attempts <= self.failures:
            return web.Response(status=self.status)
        self.delivered.append(payload)
        return web.Response(status=204)


@contextlib.asynccontextmanager
async def serving(receiver: FlakyWebhook) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[str, FlakyWebhook]]:
    receiver = FlakyWebhook(failures=2)
    async with serving(receiver) as url:
        yield url, receiver


async def spend(ledger: Ledger, project: str, node_id: str, start: datetime, minutes: int) -> None:
    await ledger.upsert(
        ExecutionStatus(
            execution_id=f"exec-{str(ULID()).lower()}",
            phase=Phase.SUCCEEDED,
            project=project,
            node_id=node_id,
            created_at=start,
            started_at=start,
            finished_at=start + timedelta(minutes=minutes),
        )
    )


async def wait_for(condition: Any, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.1)


async def test_each_crossing_alerts_once_and_a_failing_webhook_is_retried_by_the_engine(
    client: Client, control: Ledger, webhook: tuple[str, FlakyWebhook]
) -> None:
    url, receiver = webhook
    project = f"p-{str(ULID()).lower()}"
    now = datetime.now(UTC)
    created = max(now - timedelta(minutes=30), month_start(now))
    node_id = f"n-{str(ULID()).lower()}"
    # 3.6 EUR an hour on one slot: ten minutes of work cost €0.60.
    await control.save_node(
        NodeRecord(
            node_id=node_id,
            slots=1,
            hourly_price_microns=3_600_000,
            state=NodeState.READY,
            created_at=created,
            ready_at=created,
        )
    )
    limit = SpendingLimit(project=project, amount_microns=1_000_000, alert_at_percent=50)
    await control.set_limit(limit.model_copy(update={"webhook": url}))

    await spend(control, project, node_id, created, 10)  # €0.60: past 50 %
    with capture_logs() as logged:
        first = await check_limits_once(control, client)
        assert [(a.project, a.threshold_percent) for a in first] == [(project, 50)]
        assert await check_limits_once(control, client) == []  # the same crossing: no new one
    events = [e for e in logged if e["event"] == "limit_crossed" and e["project"] == project]
    assert [(e["log_level"], e["threshold_percent"]) for e in events] == [("warning", 50)]

    handle = client.get_workflow_handle(alert_workflow_id(first[0].key))
    await handle.result()
    assert receiver.attempts == 3  # two 503s, retried by the engine, then taken
    assert len(receiver.delivered) == 1
    sent = receiver.delivered[0]
    assert sent["event"] == "rgrid.limit_crossed" and sent["project"] == project
    assert sent["threshold_percent"] == 50 and sent["spent_microns"] == 600_000
    await record_history(handle, "alert_webhook_retried")

    await spend(control, project, node_id, created + timedelta(minutes=10), 10)  # €1.20
    second = await check_limits_once(control, client)
    assert [a.threshold_percent for a in second] == [100]
    await client.get_workflow_handle(alert_workflow_id(second[0].key)).result()
    assert [p["threshold_percent"] for p in receiver.delivered] == [50, 100]
    assert await check_limits_once(control, client) == []

    # The next command shows each crossing once.
    shown = [a for a in await control.take_unshown_alerts() if a.project == project]
    assert [a.threshold_percent for a in shown] == [50, 100]
    assert [a for a in await control.take_unshown_alerts() if a.project == project] == []
    await wait_for(lambda: len(receiver.delivered) == 2)


async def test_a_webhook_that_answers_4xx_is_not_asked_again(
    client: Client, control: Ledger
) -> None:
    receiver = FlakyWebhook(failures=10, status=400)
    project = f"p-{str(ULID()).lower()}"
    now = datetime.now(UTC)
    created = max(now - timedelta(minutes=30), month_start(now))
    node_id = f"n-{str(ULID()).lower()}"
    await control.save_node(
        NodeRecord(
            node_id=node_id,
            slots=1,
            hourly_price_microns=3_600_000,
            state=NodeState.READY,
            created_at=created,
            ready_at=created,
        )
    )
    await spend(control, project, node_id, created, 10)  # €0.60 of a €1.00 limit
    async with serving(receiver) as url:
        await control.set_limit(
            SpendingLimit(
                project=project, amount_microns=1_000_000, alert_at_percent=50, webhook=url
            )
        )
        (alert,) = [a for a in await check_limits_once(control, client) if a.project == project]
        with pytest.raises(WorkflowFailureError) as failed:
            await client.get_workflow_handle(alert_workflow_id(alert.key)).result()
    cause = failed.value.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.cause
    assert isinstance(cause, ApplicationError) and cause.type == "WebhookRejected"
    assert "answered 400" in cause.message
    assert receiver.attempts == 1  # refused: the engine did not ask again
