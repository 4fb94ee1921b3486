"""Deterministic orchestration only: no I/O, clocks or randomness outside Temporal's APIs."""

from rgrid.workflows.execution import ExecutionWorkflow

WORKFLOWS = [ExecutionWorkflow]

__all__ = ["WORKFLOWS", "ExecutionWorkflow"]
