"""Deterministic orchestration only: no I/O, clocks or randomness outside Temporal's APIs."""

from rgrid.workflows.batch import BatchWorkflow
from rgrid.workflows.execution import ExecutionWorkflow

WORKFLOWS = [BatchWorkflow, ExecutionWorkflow]

__all__ = ["WORKFLOWS", "BatchWorkflow", "ExecutionWorkflow"]
