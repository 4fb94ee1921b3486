"""BatchWorkflow against a real Temporal server with real node agents."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from rgrid.client import batch, submit
from rgrid.client.session import Session
from rgrid.config import Settings
from rgrid.infra.ledger import Ledger
from rgrid.models.batch import BatchProgress, SetParallelInput
from rgrid.models.execution import Phase
from rgrid.worker.dev import temporal_binary
from tests.integration.conftest import agent, assert_replays, record_history

pytestmark = pytest.mark.integration

# Sleeps for the seconds in its input file, fails on inputs that say "fail".
SCRIPT = """
    import sys, time
    text = open(sys.argv[-1]).read().strip()
    if text == "fail":
        print("refusing", sys.argv[-1], file=sys.stderr)
        sys.exit(7)
    time.sleep(float(text))
    open("result.txt", "w").write(text)
"""


async def start_batch(
    settings: Settings, tmp_path: Path, contents: list[str], parallel: int, fail_fast: bool = False
) -> tuple[Session, WorkflowHandle[object, BatchProgress]]:
    # Not cacheable: these tests are about scheduling, and share items across tests.
    (tmp_path / "job.py").write_text(textwrap.dedent(SCRIPT) + "# rgrid: no-cache\n")
    data = tmp_path / "data"
    data.mkdir()
    for index, text in enumerate(contents):
        (data / f"item{index:02d}.txt").write_text(text)
    session = Session(settings)
    prepared = await batch.prepare(
        session,
        submit.RunRequest(script=tmp_path / "job.py"),
        ["data/*.txt"],
        parallel,
        fail_fast,
        tmp_path,
    )
    return session, await batch.start(session, prepared.batch_id, prepared.spec)


async def wait_progress(handle: WorkflowHandle[object, BatchProgress], done: Any) -> BatchProgress:
    async with asyncio.timeout(120):
        while not done(progress := await handle.query("progress", result_type=BatchProgress)):
            await asyncio.sleep(0.1)
    return progress


async def batch_events(handle: WorkflowHandle[object, BatchProgress]) -> list[tuple[str, object]]:
    """The batch's history as the events that decide its window, in order: ("start", None)
    for each child started, ("ended", execution id) when an item's script ended or it was
    done (by its signal or its result), and ("signal", name) for the user's signals."""
    found: list[tuple[str, object]] = []
    for event in (await handle.fetch_history()).events:
        if event.HasField("start_child_workflow_execution_initiated_event_attributes"):
            found.append(("start", None))
        elif ended := child_ended(event):
            found.append(("ended", ended))
        elif event.HasField("workflow_execution_signaled_event_attributes"):
            signaled = event.workflow_execution_signaled_event_attributes
            if signaled.signal_name in ("item_script_done", "item_done"):
                # Payloads are sealed by the codec: decoded as a client would.
                (report,) = await handle._client.data_converter.decode([signaled.input.payloads[0]])
                found.append(("ended", report["execution_id"]))
            else:
                found.append(("signal", signaled.signal_name))
    return found


def child_ended(event: HistoryEvent) -> str | None:
    """The workflow id of the child whose end this event records in its parent."""
    for kind in ("completed", "failed", "canceled", "terminated"):
        field = f"child_workflow_execution_{kind}_event_attributes"
        if event.HasField(field):
            return str(getattr(event, field).workflow_execution.workflow_id)
    return None


def running_at_each_start(events: list[tuple[str, object]]) -> list[tuple[int, list[str]]]:
    """For each child start: how many items ran with it, and the user's signals before it."""
    started, ended, signals = 0, set(), []
    found = []
    for kind, value in events:
        if kind == "start":
            started += 1
            found.append((started - len(ended), list(signals)))
        elif kind == "ended":
            ended.add(value)
        else:
            signals.append(str(value))
    return found


async def test_a_failing_item_does_not_stop_the_others(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    async with agent(client, settings, "batch-node", slots=2):
        session, handle = await start_batch(settings, tmp_path, ["0", "fail", "0", "0"], 2)
        final = await handle.result()
    assert (final.total, final.succeeded, final.failed, final.queued) == (4, 3, 1, 0)
    rows = await control.of_batch(handle.id)
    assert sorted((r.batch_item, r.phase) for r in rows) == [
        (0, Phase.SUCCEEDED),
        (1, Phase.FAILED),
        (2, Phase.SUCCEEDED),
        (3, Phase.SUCCEEDED),
    ]
    items = await batch.load_items(session, handle.id)
    written, _ = await batch.download(session, handle.id, items, tmp_path / "out", flat=False)
    assert written == 3
    assert sorted(p.parent.name for p in (tmp_path / "out").rglob("result.txt")) == [
        "item00",
        "item02",
        "item03",
    ]


async def test_fail_fast_starts_nothing_after_a_failure(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    async with agent(client, settings, "batch-node", slots=1):
        _, handle = await start_batch(
            settings, tmp_path, ["fail", "0", "0", "0"], parallel=1, fail_fast=True
        )
        final = await handle.result()
    assert final.stopped and final.failed == 1 and final.succeeded == 0
    assert len(await control.of_batch(handle.id)) == 1


async def test_set_parallel_changes_concurrency_live(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    async with agent(client, settings, "batch-node", slots=3):
        _, handle = await start_batch(settings, tmp_path, ["2"] * 6, parallel=1)
        await wait_progress(handle, lambda p: p.running == 1)
        await handle.signal("set_parallel", SetParallelInput(parallel=3))
        final = await handle.result()
    assert final.succeeded == 6 and final.parallel == 3
    # Judged by the order of events in the batch's history, not by a watch over time:
    # one at a time before the signal, up to three (and three reached) after it.
    window = running_at_each_start(await batch_events(handle))
    before = [running for running, signals in window if "set_parallel" not in signals]
    after = [running for running, signals in window if "set_parallel" in signals]
    assert before and max(before) == 1
    assert after and max(after) == 3
    await assert_replays(handle)


async def test_pause_holds_new_items_until_resume(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    async with agent(client, settings, "batch-node", slots=2):
        _, handle = await start_batch(settings, tmp_path, ["0.5"] * 4, parallel=1)
        await handle.signal("pause")
        # The running item ends; the batch stays paused with items left.
        paused = await wait_progress(handle, lambda p: p.paused and p.running == 0)
        assert paused.succeeded + paused.failed < 4
        await handle.signal("resume")
        final = await handle.result()
    assert final.succeeded == 4 and not final.paused
    # No child started between the pause and the resume.
    starts = [signals for _, signals in running_at_each_start(await batch_events(handle))]
    assert all(signals.count("pause") == signals.count("resume") for signals in starts)
    await assert_replays(handle)


async def test_cancel_cancels_running_children_and_starts_no_more(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    async with agent(client, settings, "batch-node", slots=2):
        _, handle = await start_batch(settings, tmp_path, ["30"] * 5, parallel=2)
        async with asyncio.timeout(60):  # both scripts are running
            while [r.phase for r in await control.of_batch(handle.id)] != [Phase.RUNNING] * 2:
                await asyncio.sleep(0.1)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        async with asyncio.timeout(30):
            while True:
                rows = await control.of_batch(handle.id)
                if all(r.phase.terminal for r in rows):
                    break
                await asyncio.sleep(0.2)
    assert len(rows) == 2
    assert {r.phase for r in rows} == {Phase.CANCELLED}


async def test_continue_as_new_keeps_counts_across_runs(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    settings.batch_page_size = 2
    # Item 1 runs on while the batch continues as new after items 0 and 1 started.
    contents = ["0", "3", "fail", "0", "0", "0", "0"]
    async with agent(client, settings, "batch-node", slots=2):
        _, handle = await start_batch(settings, tmp_path, contents, parallel=2)
        final = await handle.result()
    assert (final.total, final.succeeded, final.failed) == (7, 6, 1)
    runs = [execution async for execution in client.list_workflows(f"WorkflowId = '{handle.id}'")]
    assert len(runs) >= 3  # continued as new at least twice
    # The first run could not await it any more: it was asked for its report by signal,
    # and the batch's next run counted it once, above.
    straddling = client.get_workflow_handle(f"exec-{handle.id.removeprefix('batch-')}-1")
    told = [
        e.workflow_execution_signaled_event_attributes.signal_name
        for e in (await straddling.fetch_history()).events
        if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert told == ["report_by_signal"]
    await record_history(handle, "batch_after_continue_as_new")
    child = client.get_workflow_handle(f"exec-{handle.id.removeprefix('batch-')}-2")
    # Its spec gives its shape: no patch marker and no TemporalChangeVersion upsert.
    markers = [
        e.marker_recorded_event_attributes.marker_name
        for e in (await child.fetch_history()).events
        if e.HasField("marker_recorded_event_attributes")
    ]
    assert markers and "core_patch" not in markers
    await assert_replays(child)
    await record_history(child, "batch_item_failed")


async def test_a_terminated_item_counts_as_failed_and_the_batch_ends(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    # Terminated (`temporal workflow terminate`), a child reports nothing itself.
    async with agent(client, settings, "batch-node", slots=2):
        _, handle = await start_batch(settings, tmp_path, ["30", "0", "0"], parallel=2)
        first = client.get_workflow_handle(f"exec-{handle.id.removeprefix('batch-')}-0")
        async with asyncio.timeout(60):  # its script is running
            while (0, Phase.RUNNING) not in [
                (r.batch_item, r.phase) for r in await control.of_batch(handle.id)
            ]:
                await asyncio.sleep(0.1)
        await first.terminate("by hand")
        async with asyncio.timeout(60):
            final = await handle.result()
    assert (final.succeeded, final.failed, final.queued, final.running) == (2, 1, 0, 0)


async def test_retry_failed_reruns_only_failed_items_in_the_same_batch(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    async with agent(client, settings, "batch-node", slots=2):
        session, handle = await start_batch(settings, tmp_path, ["0", "fail", "0"], parallel=2)
        await handle.result()
        (tmp_path / "data" / "item01.txt").write_text("0")  # storage still holds "fail"
        requeued = await batch.retry_failed(session, handle.id)
        final = await client.get_workflow_handle(handle.id, result_type=BatchProgress).result()
    assert requeued == 1
    assert final.failed == 1 and final.succeeded == 2  # the same input failed again
    rows = await control.of_batch(handle.id)
    assert sorted(r.execution_id.rsplit("-", 1)[-1] for r in rows) == ["0", "1", "2", "r1"]
    await record_history(handle, "batch_retried")


async def temporal_cli(*args: str) -> str:
    # Not subprocess.run: the workers under test share this event loop.
    proc = await asyncio.create_subprocess_exec(
        temporal_binary(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_the_temporal_cli_can_signal_and_query_a_batch(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path, codec_endpoint: str
) -> None:
    address = ["--address", settings.effective_temporal_address]
    async with agent(client, settings, "batch-node", slots=2):
        _, handle = await start_batch(settings, tmp_path, ["0.3"] * 4, parallel=1)
        await temporal_cli(
            "workflow",
            "signal",
            "--workflow-id",
            handle.id,
            "--name",
            "set_parallel",
            "--input",
            json.dumps({"parallel": 2}),
            *address,
        )
        queried = await temporal_cli(
            "workflow",
            "query",
            "--workflow-id",
            handle.id,
            "--name",
            "progress",
            "--output",
            "json",
            # The answer is encrypted; a signal's plain JSON input is accepted as it is.
            "--codec-endpoint",
            codec_endpoint,
            *address,
        )
        final = await handle.result()
    progress = json.loads(queried)["queryResult"][0]
    assert progress["total"] == 4 and progress["parallel"] == 2
    assert final.parallel == 2 and final.succeeded == 4
