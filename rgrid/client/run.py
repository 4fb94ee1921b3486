"""One run as one client call: checks → prepare → cache → start → follow → conclude.

The caller (the CLI, rgrid.api) passes a RunEvents to show what happens while it happens,
and renders the RunResult it gets back, for humans or as JSON, from that one model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from rgrid.client import submit
from rgrid.client.outputs import download_outputs
from rgrid.client.session import Session
from rgrid.client.waiting import WaitReport
from rgrid.client.watch import replay_logs, wait_for_result
from rgrid.infra.logstore import LogRecord
from rgrid.models.execution import ExecutionStatus


class RunEvents(Protocol):
    """What a caller is told while a run goes on."""

    wants_output: bool  # False: the script's output is not even read

    def warning(self, line: str) -> None:
        """A spending limit or budget note, before anything is started."""

    def started(self, execution_id: str, report: submit.UploadReport) -> None:
        """The execution exists (started, joined, or served from the cache)."""

    def record(self, record: LogRecord) -> None:
        """One chunk of the script's output, as it arrives."""

    def waiting(self, report: WaitReport) -> None:
        """The run still waits for a node: where it stands and why (every few seconds)."""


class QuietEvents:
    """Shows nothing: for --json and for programs."""

    wants_output = False

    def warning(self, line: str) -> None:
        pass

    def started(self, execution_id: str, report: submit.UploadReport) -> None:
        pass

    def record(self, record: LogRecord) -> None:
        pass

    def waiting(self, report: WaitReport) -> None:
        pass


@dataclass
class RunOptions:
    """Where outputs go and how long the caller stays."""

    output_dir: Path = Path("outputs")
    remote_only: bool = False
    detach: bool = False
    budget: str | None = None


@dataclass
class RunResult:
    """What a run ended as; with detach, only that it exists."""

    execution_id: str
    status: ExecutionStatus | None  # None: detached before it ended
    report: submit.UploadReport = field(default_factory=submit.UploadReport)
    local: list[Path] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    detached_phase: str = "queued"


async def before_run(
    session: Session,
    request: submit.RunRequest,
    budget: str | None,
    warn: Callable[[str], None],
    runs: int = 1,
    parallel: int = 1,
) -> None:
    """Spending limits, --budget and the queue's bounds, before anything is uploaded or
    started."""
    from rgrid.client import (
        money,  # loads SQLAlchemy, as the run's ledger use does anyway
        queue,
    )
    from rgrid.money.pricing import parse_money

    # A batch keeps at most `parallel` items waiting for a node, not its whole list.
    await queue.check_room(session, session.settings.project, min(runs, parallel))

    for line in await money.before_run(
        session, request.script, budget, runs, parallel, request.timeout_s
    ):
        warn(line)
    if budget is not None:  # the control plane holds the run (or batch) to it too
        request.budget_microns = parse_money(budget).amount_microns


async def run(
    session: Session,
    request: submit.RunRequest,
    cwd: Path,
    options: RunOptions,
    events: RunEvents,
) -> RunResult:
    """Run one script to its end (or, detached, until it has started)."""
    await before_run(session, request, options.budget, events.warning)
    spec, report = await submit.prepare(session, request, cwd)
    cached = await submit.serve_from_cache(session, spec)
    execution_id = cached.execution_id if cached else await submit.start_riding_out(session, spec)
    if options.detach:
        phase = cached.phase.value if cached else "queued"
        return RunResult(execution_id, None, report, detached_phase=phase)
    events.started(execution_id, report)
    if cached is None:
        return await follow(session, execution_id, options, events, report)
    if events.wants_output:
        await replay_logs(session, cached, events.record)
    return await conclude(session, cached, options, report)


async def follow(
    session: Session,
    execution_id: str,
    options: RunOptions,
    events: RunEvents,
    report: submit.UploadReport | None = None,
) -> RunResult:
    """Stream an execution's output until it ends, then conclude it."""
    sink = events.record if events.wants_output else None
    status = await wait_for_result(session, execution_id, sink, on_wait=events.waiting)
    return await conclude(session, status, options, report or submit.UploadReport())


async def conclude(
    session: Session,
    status: ExecutionStatus,
    options: RunOptions,
    report: submit.UploadReport,
) -> RunResult:
    """Download an ended execution's outputs (unless remote-only)."""
    result = RunResult(status.execution_id, status, report)
    if not options.remote_only and status.outputs:
        result.local, result.refused = await download_outputs(
            session.storage, status, options.output_dir, track=session.track
        )
    return result
