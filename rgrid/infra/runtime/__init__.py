"""Runtimes run one script in a prepared work dir: process (venv + subprocess) or docker."""

from rgrid.infra.runtime.base import OutputSink, RunOutcome, RunRequest, Runtime

__all__ = ["OutputSink", "RunOutcome", "RunRequest", "Runtime"]
