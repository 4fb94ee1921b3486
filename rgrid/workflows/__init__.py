"""Deterministic orchestration only: no I/O, clocks or randomness outside Temporal's APIs."""

from rgrid.workflows.alert import AlertWorkflow
from rgrid.workflows.batch import BatchWorkflow
from rgrid.workflows.execution import ExecutionWorkflow
from rgrid.workflows.limit_watch import LimitWatchWorkflow
from rgrid.workflows.node_pool import NodePoolWorkflow

WORKFLOWS = [AlertWorkflow, BatchWorkflow, ExecutionWorkflow, LimitWatchWorkflow, NodePoolWorkflow]

__all__ = [
    "WORKFLOWS",
    "AlertWorkflow",
    "BatchWorkflow",
    "ExecutionWorkflow",
    "LimitWatchWorkflow",
    "NodePoolWorkflow",
]
