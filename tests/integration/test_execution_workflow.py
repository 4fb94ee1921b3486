"""ExecutionWorkflow against a real Temporal server, with real node agents.

Set RGRID_RECORD_HISTORIES=1 to (re)write tests/histories/*.json from these runs; the
replay test then checks that today's workflow code still accepts them.
"""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError
from ulid import ULID

from rgrid.cache.key import spec_key
from rgrid.client import submit
from rgrid.client.session import Session
from rgrid.config import Settings
from rgrid.infra.ledger import Ledger
from rgrid.infra.providers.local import LocalProvider
from rgrid.models.execution import ExecutionStatus, Phase
from rgrid.workflows.node_steps import SAME_NODE_RETRIES, repeat_pickup
from tests.integration.conftest import (
    agent,
    agent_before_execute,
    assert_replays,
    record_history,
)

pytestmark = pytest.mark.integration


async def start(
    settings: Settings, tmp_path: Path, body: str, cacheable: bool = False, **request: object
) -> WorkflowHandle[object, ExecutionStatus]:
    script = tmp_path / "job.py"
    # Not cacheable unless asked: most tests are about running, and share bodies.
    script.write_text(textwrap.dedent(body) + ("" if cacheable else "# rgrid: no-cache\n"))
    session = Session(settings)
    spec, _ = await submit.prepare(session, submit.RunRequest(script=script, **request), tmp_path)  # type: ignore[arg-type]
    return await submit.start(session, spec)


async def wait_for_phase(
    handle: WorkflowHandle[object, ExecutionStatus], phase: Phase, timeout: float = 30
) -> ExecutionStatus:
    async with asyncio.timeout(timeout):
        while True:
            status = await handle.query("status", result_type=ExecutionStatus)
            if status.phase is phase:
                return status
            await asyncio.sleep(0.1)


async def test_successful_run_is_recorded_with_outputs(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    async with agent(client, settings, "node-a"):
        handle = await start(settings, tmp_path, "open('out.txt', 'w').write('ok')\n")
        result = await handle.result()
    assert result.phase is Phase.SUCCEEDED
    assert [o.path for o in result.outputs] == ["out.txt"]
    row = await control.get(handle.id)
    assert row.phase is Phase.SUCCEEDED and row.node_id == "node-a" and row.attempts == 1
    await record_history(handle, "succeeded")


async def test_a_node_agent_from_before_execute_still_runs_it_in_three_steps(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    # A pool's node made before an upgrade of the control plane lives on for a while.
    async with agent_before_execute(client, settings, "node-old"):
        handle = await start(settings, tmp_path, "open('out.txt', 'w').write('ok')\n")
        result = await handle.result()
    assert result.phase is Phase.SUCCEEDED and result.node_id == "node-old"
    assert [o.path for o in result.outputs] == ["out.txt"]
    assert result.attempts == 1  # no attempt was counted lost
    history = await handle.fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled == ["claim_node", "execute", "stage_inputs", "run_container",
                         "collect_outputs"]  # fmt: skip
    await assert_replays(handle)


async def test_an_identical_run_is_answered_from_the_cache_without_a_node(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    body = f"open('out.txt', 'w').write('{ULID()}')\n"
    async with agent(client, settings, "node-c"):
        first = await (await start(settings, tmp_path, body, cacheable=True)).result()
    # No agent now: only the cache can answer. (Started as a gRPC client would, without
    # the CLI's own cache lookup.)
    handle = await start(settings, tmp_path, body, cacheable=True)
    second = await handle.result()
    assert second.execution_id != first.execution_id
    assert second.cached and second.cached_from == first.execution_id
    assert second.node_id is None and second.cost_microns == 0 and second.attempts == 0
    assert second.outputs == first.outputs
    assert (await control.get(handle.id)).cached
    await record_history(handle, "cached")


async def test_the_cli_and_a_differently_configured_control_worker_agree_on_the_key(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    # The control worker runs with the default images; this client names another one.
    # The spec carries the client's choice, so plan stores under the key the CLI reads.
    mine = settings.model_copy(update={"python_image": "example/python:client-side"})
    script = tmp_path / "job.py"
    script.write_text(f"open('out.txt', 'w').write('{ULID()}')\n")
    session = Session(mine)
    spec, _ = await submit.prepare(session, submit.RunRequest(script=script), tmp_path)
    assert spec.default_image == "example/python:client-side"
    assert await submit.serve_from_cache(session, spec) is None
    async with agent(client, mine, "node-k"):
        first = await (await submit.start(session, spec)).result()
    assert first.cache_key == spec_key(spec)
    served = await submit.serve_from_cache(session, spec)
    assert served is not None and served.cached_from == first.execution_id
    await session.close()


async def test_script_failure_is_not_retried_unless_asked(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    # Counted by the ledger's attempts: the sandboxed script cannot write outside its run.
    body = "import sys; sys.exit(2)\n"
    async with agent(client, settings, "node-a"):
        handle = await start(settings, tmp_path, body)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        assert isinstance(failure.value.cause, ApplicationError)
        assert failure.value.cause.type == "ScriptFailed"
        assert (await control.get(handle.id)).attempts == 1
        await record_history(handle, "script_failed")

        retried = await start(settings, tmp_path, body, retries=2)
        with pytest.raises(WorkflowFailureError):
            await retried.result()
    assert (await control.get(retried.id)).attempts == 3


async def test_timeout_and_cancel_end_in_their_own_phases(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    async with agent(client, settings, "node-a", slots=2):
        timed = await start(settings, tmp_path, "import time; time.sleep(30)\n", timeout_s=1)
        with pytest.raises(WorkflowFailureError) as failure:
            await timed.result()
        assert isinstance(failure.value.cause, ApplicationError)
        assert failure.value.cause.type == "ScriptTimedOut"
        await record_history(timed, "timed_out")

        sleeper = await start(settings, tmp_path, "import time; time.sleep(30)\n")
        await wait_for_phase(sleeper, Phase.RUNNING)
        await sleeper.cancel()
        with pytest.raises(WorkflowFailureError) as cancelled:
            await sleeper.result()
        assert isinstance(cancelled.value.cause, CancelledError)
        await record_history(sleeper, "cancelled")
    assert (await control.get(timed.id)).phase is Phase.TIMED_OUT
    assert (await control.get(sleeper.id)).phase is Phase.CANCELLED


async def test_a_run_on_a_killed_node_completes_on_another(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    provider = LocalProvider(settings, tmp_path)
    settings.node_dir.mkdir(parents=True, exist_ok=True)
    provider.start_node("doomed-1", 1)
    provider.start_node("doomed-2", 1)
    try:
        handle = await start(
            settings, tmp_path, "import time; time.sleep(2); open('done', 'w').write('y')\n"
        )
        running = await wait_for_phase(handle, Phase.RUNNING)
        assert running.node_id is not None
        provider.kill_node(running.node_id)
        result = await handle.result()
    finally:
        provider.stop_all()
    assert result.phase is Phase.SUCCEEDED
    assert result.attempts == 2
    assert result.node_id != running.node_id
    assert [o.path for o in result.outputs] == ["done"]
    await record_history(handle, "node_lost")


async def test_no_node_of_the_class_fails_clearly_after_the_queue_timeout(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    settings.queue_timeout_s = 2
    handle = await start(settings, tmp_path, "print('never runs')\n")
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert isinstance(failure.value.cause, ApplicationError)
    assert failure.value.cause.type == "NoNodeAvailable"
    assert "node took the run within 2 s" in failure.value.cause.message
    assert (await control.get(handle.id)).phase is Phase.FAILED


async def test_a_node_runs_no_more_executions_than_it_has_slots(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    async with agent(client, settings, "one-slot", slots=1):
        first = await start(settings, tmp_path, "import time; time.sleep(1.5)\n")
        second = await start(settings, tmp_path, "import time; time.sleep(1.5)\n")
        async with asyncio.timeout(30):  # either may win the slot; the other must wait
            while True:
                phases = {
                    (await handle.query("status", result_type=ExecutionStatus)).phase
                    for handle in (first, second)
                }
                if Phase.RUNNING in phases:
                    break
                await asyncio.sleep(0.05)
        assert phases == {Phase.RUNNING, Phase.QUEUED}
        results = sorted(
            [await first.result(), await second.result()], key=lambda s: s.started_at or 0
        )
    assert results[0].finished_at and results[1].started_at
    assert results[1].started_at >= results[0].finished_at


async def test_a_run_that_loses_every_node_it_may_try_fails_naming_the_losses(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"max_node_attempts": 2})
    provider = LocalProvider(settings, tmp_path)
    settings.node_dir.mkdir(parents=True, exist_ok=True)
    provider.start_node("doomed-1", 1)
    provider.start_node("doomed-2", 1)
    try:
        handle = await start(settings, tmp_path, "import time; time.sleep(300)\n")
        killed = []
        # A killed node is given up on after its heartbeat timeout and one more pickup
        # than SAME_NODE_RETRIES (node_steps.py): ~45 s here, more on a loaded machine.
        hb = settings.heartbeat_timeout_s
        given_up_s = hb + (SAME_NODE_RETRIES + 1) * repeat_pickup(hb).total_seconds()
        for _ in range(2):  # kill -9 the node it runs on, each time it starts somewhere new
            async with asyncio.timeout(given_up_s + 45):
                while True:
                    status = await wait_for_phase(handle, Phase.RUNNING)
                    if status.node_id not in killed:
                        break
                    await asyncio.sleep(0.1)
            assert status.node_id is not None
            provider.kill_node(status.node_id)
            killed.append(status.node_id)
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    finally:
        provider.stop_all()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "NodesLost"
    assert cause.message.startswith("gave up after 2 lost nodes")
    assert sorted(killed) == ["doomed-1", "doomed-2"]
    row = await control.get(handle.id)
    assert row.phase is Phase.FAILED and row.attempts == 2
