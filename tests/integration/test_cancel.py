"""Cancel means cancelled, however it is asked: `temporal workflow cancel` (the real CLI)
on a queued run, on a running one, and on a batch ends each `cancelled`, in Temporal and
in the ledger, never `failed` with a queue-timeout message."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import CancelledError

from rgrid.client import batch
from rgrid.config import Settings
from rgrid.infra.ledger import Ledger
from rgrid.models.batch import BatchProgress
from rgrid.models.execution import ExecutionStatus, Phase
from rgrid.worker.dev import temporal_binary
from tests.integration.conftest import agent, assert_replays, record_history
from tests.integration.test_batch_workflow import start_batch
from tests.integration.test_execution_workflow import start, wait_for_phase

pytestmark = pytest.mark.integration


def temporal_cancel(settings: Settings, workflow_id: str) -> None:
    """What an operator types, with the real temporal CLI."""
    subprocess.run(
        [
            temporal_binary(),
            "workflow",
            "cancel",
            "--workflow-id",
            workflow_id,
            "--address",
            settings.effective_temporal_address,
        ],
        check=True,
        capture_output=True,
    )


async def test_a_queued_run_cancelled_with_the_temporal_cli_ends_cancelled(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    handle = await start(settings, tmp_path, "print('never runs')\n")  # no node of its class
    await wait_for_phase(handle, Phase.QUEUED)
    temporal_cancel(settings, handle.id)
    with pytest.raises(WorkflowFailureError) as ended:
        await handle.result()
    assert isinstance(ended.value.cause, CancelledError)
    recorded = await control.get(handle.id)
    assert recorded.phase is Phase.CANCELLED
    assert recorded.error is None
    await assert_replays(handle)
    await record_history(handle, "cancelled_while_queued")


async def test_a_running_run_cancelled_with_the_temporal_cli_is_killed_and_ends_cancelled(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    async with agent(client, settings, "cancel-node"):
        handle = await start(
            settings, tmp_path, "import time; time.sleep(60); open('late', 'w').write('x')\n"
        )
        await wait_for_phase(handle, Phase.RUNNING)
        temporal_cancel(settings, handle.id)
        with pytest.raises(WorkflowFailureError) as ended:
            await handle.result()
    assert isinstance(ended.value.cause, CancelledError)
    recorded = await control.get(handle.id)
    assert recorded.phase is Phase.CANCELLED
    assert recorded.outputs == []


async def test_a_cancelled_batch_ends_cancelled_with_its_queued_children(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    # No node of the class: every started child waits in the queue.
    session, handle = await start_batch(settings, tmp_path, ["1", "1", "1"], parallel=2)
    async with asyncio.timeout(30):
        while (await handle.query("progress", result_type=BatchProgress)).running < 2:
            await asyncio.sleep(0.1)
        children = [e for e in await control.of_batch(handle.id)]
        while len(children) < 2 or any(c.phase is not Phase.QUEUED for c in children):
            await asyncio.sleep(0.1)
            children = await control.of_batch(handle.id)
    temporal_cancel(settings, handle.id)
    with pytest.raises(WorkflowFailureError) as ended:
        await handle.result()
    assert isinstance(ended.value.cause, CancelledError)
    async with asyncio.timeout(30):
        while not all(c.phase.terminal for c in await control.of_batch(handle.id)):
            await asyncio.sleep(0.1)
    children = await control.of_batch(handle.id)
    assert [c.phase for c in children] == [Phase.CANCELLED, Phase.CANCELLED]
    for child in children:
        final = client.get_workflow_handle(child.execution_id, result_type=ExecutionStatus)
        with pytest.raises(WorkflowFailureError) as child_end:
            await final.result()
        assert isinstance(child_end.value.cause, CancelledError)
    progress = await batch.progress(session, handle.id)  # as `rgrid status batch-…` asks
    assert progress.cancelled and progress.done
    await assert_replays(handle)
