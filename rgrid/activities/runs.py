"""Script runs kept by the node, apart from the activity attempt that started them.

A run belongs to its lease, not to one `run_container` attempt: when the control plane
or Temporal is away long enough for the attempt to time out, the script goes on, and the
workflow's retry on the same node re-attaches to it or takes its kept result instead of
running it again. A finished run is kept until `collect_outputs` takes it (or the lease
is released); only a run nobody attaches to for `abandon_after` is given up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rgrid.infra.logstore import LogChunkWriter
from rgrid.models.node import CollectOutputsResult, ExecuteResult, RunResult


@dataclass
class KeptRun:
    """One lease's script run: alive while `task` runs, then its result (or error)."""

    task: asyncio.Task[RunResult]
    logs: LogChunkWriter
    touched: datetime  # last attach, detach or end: abandonment counts from here
    attached: int = 0


@dataclass
class Collected:
    """A lease's collected outputs (and, after an `execute`, its run), kept a while."""

    outputs: CollectOutputsResult
    at: datetime
    run: RunResult | None = None


class RunKeeper:
    """The runs of one node's leases; event-loop only (activities are async)."""

    def __init__(self, abandon_after: timedelta) -> None:
        self._abandon_after = abandon_after
        self._runs: dict[str, KeptRun] = {}
        # Collected results outlive their lease a while: a collect whose answer was lost
        # (Temporal away) is asked again and must not find the lease gone.
        self._collected: dict[str, Collected] = {}
        self._collecting: dict[str, asyncio.Task[CollectOutputsResult]] = {}

    def get(self, lease_id: str) -> KeptRun | None:
        """The run of this lease, alive or finished, if the node still has it."""
        return self._runs.get(lease_id)

    def start(
        self,
        lease_id: str,
        body: Coroutine[Any, Any, RunResult],
        logs: LogChunkWriter,
        now: datetime,
    ) -> KeptRun:
        """Start the lease's run; the caller has checked that it has none."""
        kept = KeptRun(task=asyncio.create_task(body), logs=logs, touched=now)
        self._runs[lease_id] = kept
        return kept

    def attach(self, kept: KeptRun, now: datetime) -> None:
        """An activity attempt follows the run now."""
        kept.attached += 1
        kept.touched = now

    def detach(self, kept: KeptRun, now: datetime) -> None:
        """The attempt following the run has gone; the run goes on, unwatched."""
        kept.attached = max(0, kept.attached - 1)
        kept.touched = now

    def holds(self, lease_id: str, now: datetime) -> bool:
        """True while the lease's run is followed, alive, or finished but not taken,
        unless nobody attached for `abandon_after`: the reaper leaves such a lease be."""
        kept = self._runs.get(lease_id)
        if kept is None:
            return False
        if kept.attached > 0:
            return True
        return now - kept.touched < self._abandon_after

    def collected(self, lease_id: str) -> CollectOutputsResult | None:
        """What an earlier collect of this lease returned, if it happened."""
        entry = self._collected.get(lease_id)
        return entry.outputs if entry else None

    def executed(self, lease_id: str) -> ExecuteResult | None:
        """What an earlier `execute` of this lease returned, if it got that far."""
        entry = self._collected.get(lease_id)
        if entry is None or entry.run is None:
            return None
        return ExecuteResult(run=entry.run, outputs=entry.outputs)

    async def collect_once(
        self,
        lease_id: str,
        collect: Callable[[], Coroutine[Any, Any, CollectOutputsResult]],
    ) -> CollectOutputsResult:
        """Run the lease's collect, or join the one under way. An attempt that timed out
        while collecting goes on in this process; its retry must wait for that collect,
        not race it over the work dir the first one deletes when it is done. Shielded: a
        cancelled attempt leaves the collect running for the next one."""
        task = self._collecting.get(lease_id)
        if task is None:
            task = asyncio.create_task(collect())
            self._collecting[lease_id] = task

            def finished(done: asyncio.Task[CollectOutputsResult]) -> None:
                self._collecting.pop(lease_id, None)
                if not done.cancelled():
                    done.exception()  # retrieved: a collect nobody awaits any more is no warning

            task.add_done_callback(finished)
        return await asyncio.shield(task)

    def remember_collected(
        self,
        lease_id: str,
        result: CollectOutputsResult,
        now: datetime,
        run: RunResult | None = None,
    ) -> None:
        """The workflow has taken the run's outputs; keep the answer for a repeat ask."""
        self._collected[lease_id] = Collected(result, now, run)

    def drop(self, lease_id: str) -> asyncio.Task[RunResult] | None:
        """Forget the lease's run, killing it if it still runs (release, abandonment);
        the task, for a caller that can wait until the kill has landed."""
        kept = self._runs.pop(lease_id, None)
        if kept is None:
            return None
        kept.task.cancel()  # a no-op once it has ended
        return kept.task

    def forget_old_collected(self, now: datetime) -> None:
        """Collected answers older than the abandon time are of no further use."""
        for lease_id, entry in list(self._collected.items()):
            if now - entry.at >= self._abandon_after:
                del self._collected[lease_id]

    async def close(self) -> None:
        """Kill every run (the agent is stopping)."""
        for lease_id in list(self._runs):
            await settle(self.drop(lease_id))


async def settle(task: asyncio.Task[RunResult] | None) -> None:
    """Wait for a dropped run to have ended; its result or error is nobody's now."""
    if task is not None:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
