"""Deterministic orchestration only: no I/O, clocks or randomness outside Temporal's APIs.

The workflow classes load on first use (`rgrid.workflows.WORKFLOWS`, or their own
modules): a client that needs only rgrid.workflows.visibility's helpers then pays none of
the activities' imports (the ledger's SQLAlchemy among them)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rgrid.workflows.alert import AlertWorkflow
    from rgrid.workflows.batch import BatchWorkflow
    from rgrid.workflows.execution import ExecutionWorkflow
    from rgrid.workflows.limit_watch import LimitWatchWorkflow
    from rgrid.workflows.node_pool import NodePoolWorkflow

_MODULES = {
    "AlertWorkflow": "alert",
    "BatchWorkflow": "batch",
    "ExecutionWorkflow": "execution",
    "LimitWatchWorkflow": "limit_watch",
    "NodePoolWorkflow": "node_pool",
}


def __getattr__(name: str) -> Any:
    if name == "WORKFLOWS":
        return [__getattr__(workflow) for workflow in _MODULES]
    if name in _MODULES:
        return getattr(importlib.import_module(f"rgrid.workflows.{_MODULES[name]}"), name)
    raise AttributeError(name)


__all__ = [
    "WORKFLOWS",
    "AlertWorkflow",
    "BatchWorkflow",
    "ExecutionWorkflow",
    "LimitWatchWorkflow",
    "NodePoolWorkflow",
]
