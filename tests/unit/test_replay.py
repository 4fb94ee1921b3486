"""Recorded histories of real runs still replay against today's workflow code, so a change
cannot break executions that are in flight when it is deployed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from rgrid.infra.codec import CodecKey, Keyring
from rgrid.infra.temporal import data_converter
from rgrid.workflows import WORKFLOWS

HISTORIES = sorted((Path(__file__).parent.parent / "histories").glob("*.json"))


def test_histories_exist_for_every_outcome() -> None:
    names = {path.stem for path in HISTORIES}
    assert {"succeeded", "script_failed", "timed_out", "cancelled", "node_lost", "cached"} <= names
    assert {"batch_after_continue_as_new", "batch_item_failed", "batch_retried"} <= names
    assert {"alert_webhook_retried"} <= names
    assert {"node_pool", "execution_with_pool", "no_capacity"} <= names
    assert {"cancelled_while_queued", "run_step_timed_out_and_re_attached"} <= names


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path: Path) -> None:
    record = json.loads(path.read_text())
    history = WorkflowHistory.from_json(record["workflow_id"], record["history"])
    # Recorded since the codec: encrypted, with the test session's throwaway key.
    keys = record.get("codec_key")
    keyring = Keyring.parse(keys, path.name) if keys else Keyring([CodecKey.generate()])
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=data_converter(keyring),
        # Workers run ExecutionWorkflow unsandboxed (for speed); here the sandbox checks it.
        unsandboxed_workflow_runner=SandboxedWorkflowRunner(),
    )
    await replayer.replay_workflow(history)
