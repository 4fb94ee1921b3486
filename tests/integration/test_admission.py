"""Spending limits and budgets are decided by the control plane, on both sides of the
boundary: a run, a run with a budget, and a batch retry sent with the `temporal` CLI are let
through below the limit (warned from its alert threshold on) and refused at exactly 100 %,
and one project's used-up limit leaves another project alone."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from ulid import ULID

from rgrid import names
from rgrid.client import batch, submit
from rgrid.client.session import Session
from rgrid.config import Settings
from rgrid.errors import Failure
from rgrid.infra.ledger import Ledger
from rgrid.models.batch import BatchProgress
from rgrid.models.execution import ExecutionStatus, Phase
from rgrid.models.money import SpendingLimit
from rgrid.models.pool import NodeRecord, NodeState
from rgrid.money.accounting import month_start
from rgrid.worker.dev import temporal_binary
from tests.integration.conftest import agent, assert_replays

pytestmark = pytest.mark.integration

# 3.6 EUR an hour on one slot: a second of work costs 1,000 microns, ten minutes 600,000.
PRICE = 3_600_000
SPENT = 600_000


def unique(prefix: str) -> str:
    return f"{prefix}-{str(ULID()).lower()}"


async def priced_node(ledger: Ledger, node_class: str, created: datetime) -> str:
    node_id = unique("priced")
    await ledger.save_node(
        NodeRecord(
            node_id=node_id,
            node_class=node_class,
            slots=1,
            hourly_price_microns=PRICE,
            state=NodeState.READY,
            created_at=created,
            ready_at=created,
        )
    )
    return node_id


async def project_that_spent(ledger: Ledger, limit_microns: int | None) -> str:
    """A project of its own that has spent exactly SPENT this month, with a limit (warning
    at 50 %) of `limit_microns`."""
    project = unique("p")
    now = datetime.now(UTC)
    start = max(now - timedelta(minutes=20), month_start(now))
    node_id = await priced_node(ledger, unique("elsewhere"), start)
    await ledger.upsert(
        ExecutionStatus(
            execution_id=unique("exec"),
            phase=Phase.SUCCEEDED,
            project=project,
            node_id=node_id,
            created_at=start,
            started_at=start,
            finished_at=start + timedelta(minutes=10),
        )
    )
    if limit_microns is not None:
        await ledger.set_limit(
            SpendingLimit(project=project, amount_microns=limit_microns, alert_at_percent=50)
        )
    return project


async def start_run(
    settings: Settings, tmp_path: Path, project: str, budget: int | None = None
) -> WorkflowHandle[object, ExecutionStatus]:
    """Starts the workflow directly, as rgrid.api or a hand-made start would: no CLI check."""
    script = tmp_path / f"{project}.py"
    # Unique, so no earlier run of it feeds the estimate: it assumes the whole timeout.
    script.write_text(f"print('{project}')\n# rgrid: no-cache\n")
    session = Session(settings.model_copy(update={"project": project}))
    request = submit.RunRequest(script=script, timeout_s=60, budget_microns=budget)
    spec, _ = await submit.prepare(session, request, tmp_path)
    return await submit.start(session, spec)


async def refusal_of(handle: WorkflowHandle[object, ExecutionStatus]) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


async def warned(ledger: Ledger, projects: list[str]) -> list[list[int]]:
    """The crossings not shown yet of each project (taking them shows them all, once)."""
    alerts = await ledger.take_unshown_alerts()
    return [sorted(a.threshold_percent for a in alerts if a.project == p) for p in projects]


async def test_a_run_is_let_through_below_its_limit_and_refused_at_exactly_100_percent(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    below_warning = await project_that_spent(control, 1_500_000)  # 40 %
    at_warning = await project_that_spent(control, 1_200_000)  # exactly 50 %
    one_below = await project_that_spent(control, SPENT + 1)  # one micron short of 100 %
    at_limit = await project_that_spent(control, SPENT)  # exactly 100 %
    no_limit = await project_that_spent(control, None)

    refused_run = await start_run(settings, tmp_path, at_limit)
    refused = await refusal_of(refused_run)
    assert refused.type == Failure.LIMIT_EXCEEDED
    assert "new runs refused" in refused.message and f"project {at_limit}" in refused.message
    assert "€0.60 spent" in refused.message
    row = await control.get(refused_run.id)
    assert row.phase is Phase.FAILED and row.node_id is None  # recorded; nothing claimed

    async with agent(client, settings, unique("admit-node"), slots=4):
        handles = [
            await start_run(settings, tmp_path, project)
            for project in (below_warning, at_warning, one_below, no_limit)
        ]
        results = await asyncio.gather(*(h.result() for h in handles))
    assert [r.phase for r in results] == [Phase.SUCCEEDED] * 4
    assert await warned(control, [below_warning, at_warning, one_below, at_limit]) == [
        [],
        [50],
        [50],
        [50, 100],
    ]
    await assert_replays(handles[0])


async def test_a_budget_lets_an_estimate_equal_to_it_through_and_refuses_one_micron_less(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    # The newest node of the class prices the estimate: 60 s at 1,000 microns a second.
    await priced_node(control, settings.node_class, datetime.now(UTC))
    project = unique("budget")
    refused = await refusal_of(await start_run(settings, tmp_path, project, budget=59_999))
    assert refused.type == Failure.BUDGET_EXCEEDED
    assert "estimate €0.06 for 1 run(s) is above the budget €0.059999" in refused.message

    async with agent(client, settings, unique("budget-node")):
        allowed = await (await start_run(settings, tmp_path, project, budget=60_000)).result()
    assert allowed.phase is Phase.SUCCEEDED


async def send_retry_update(settings: Settings, batch_id: str) -> subprocess.CompletedProcess[str]:
    """What an operator can do by hand: the update through the temporal CLI, no rgrid."""
    return await asyncio.to_thread(
        subprocess.run,
        [
            temporal_binary(),
            "workflow",
            "update",
            "execute",
            "--address",
            settings.temporal_address,
            "--workflow-id",
            batch_id,
            "--name",
            "retry_failed",
            "--input",
            "{}",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def wait_progress(handle: WorkflowHandle[object, BatchProgress], done: object) -> None:
    async with asyncio.timeout(120):
        while not done(await handle.query("progress", result_type=BatchProgress)):  # type: ignore[operator]
            await asyncio.sleep(0.2)


async def test_a_retry_sent_with_the_temporal_cli_is_refused_at_the_limit_and_let_through_below(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    project = await project_that_spent(control, None)
    mine = settings.model_copy(update={"project": project})
    (tmp_path / "job.py").write_text(
        "import sys, time\ntext = open(sys.argv[-1]).read()\n"
        "sys.exit(7) if text == 'fail' else time.sleep(float(text))\n# rgrid: no-cache\n"
    )
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("fail")
    (tmp_path / "data" / "b.txt").write_text("600")  # keeps the batch running meanwhile
    session = Session(mine)
    prepared = await batch.prepare(
        session, submit.RunRequest(script=tmp_path / "job.py"), ["data/*.txt"], 2, False, tmp_path
    )
    async with agent(client, mine, unique("retry-node"), slots=2):
        handle = await batch.start(session, prepared.batch_id, prepared.spec)
        await wait_progress(handle, lambda p: p.failed == 1 and p.running == 1)

        await control.set_limit(SpendingLimit(project=project, amount_microns=SPENT))
        refused = await send_retry_update(mine, handle.id)
        assert refused.returncode != 0
        assert "retries refused" in refused.stdout + refused.stderr
        progress = await handle.query("progress", result_type=BatchProgress)
        assert (progress.failed, progress.queued) == (1, 0)  # nothing was requeued

        await control.set_limit(SpendingLimit(project=project, amount_microns=SPENT + 1))
        allowed = await send_retry_update(mine, handle.id)
        # Accepted (the temporal CLI cannot decode the codec-sealed result, so the item
        # running again below is what shows it).
        assert "refused" not in allowed.stdout + allowed.stderr
        retried = names.item_execution_id(handle.id, 0, 1)
        async with asyncio.timeout(120):  # it runs again, and fails again as its input says
            while not [
                r
                for r in await control.of_batch(handle.id)
                if r.execution_id == retried and r.phase.terminal
            ]:
                await asyncio.sleep(0.2)
        assert (await control.get(retried)).phase is Phase.FAILED
        await handle.cancel()
    await assert_replays(handle)
