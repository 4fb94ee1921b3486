"""The wire contract other services start rgrid runs by (docs/api.md): workflow types, the
task queue, the JSON schemas of inputs and results, and where inputs must be stored."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from rgrid.models.batch import BatchInput, BatchProgress
from rgrid.models.execution import ExecutionSpec, ExecutionStatus
from rgrid.names import CONTROL_QUEUE

EXECUTION_WORKFLOW = "ExecutionWorkflow"
BATCH_WORKFLOW = "BatchWorkflow"
TASK_QUEUE = CONTROL_QUEUE
INPUT_KEY = "cas/{sha256[:2]}/{sha256}"  # a FileRef's content, under the storage URL

SCHEMAS: dict[str, type[BaseModel]] = {
    "execution-input": ExecutionSpec,
    "execution-result": ExecutionStatus,
    "batch-input": BatchInput,
    "batch-result": BatchProgress,
}


def schema(name: str) -> dict[str, Any]:
    """One JSON schema (draft 2020-12, as pydantic writes it) with its contract facts."""
    model = SCHEMAS[name]
    found = model.model_json_schema()
    workflow = EXECUTION_WORKFLOW if name.startswith("execution") else BATCH_WORKFLOW
    found["$comment"] = f"rgrid {name}: workflow type {workflow}, task queue {TASK_QUEUE}"
    return found


def contract() -> dict[str, Any]:
    """Everything `rgrid schema` prints."""
    return {
        "workflows": {EXECUTION_WORKFLOW: "execution", BATCH_WORKFLOW: "batch"},
        "task_queue": TASK_QUEUE,
        "input_storage_key": INPUT_KEY,
        "schemas": {name: schema(name) for name in SCHEMAS},
    }
