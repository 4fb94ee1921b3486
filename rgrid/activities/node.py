"""Activities that run ON a node: claim a slot; stage, run, collect, or all three (execute).

Each works on one lease; a lease not renewed for `lease_ttl_s` is reaped by the agent,
so a vanished workflow cannot hold a slot forever, unless its script has run: that lease
keeps its run and result (runs.py) until the workflow takes them or `abandon_s` passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError
from ulid import ULID

from rgrid import names
from rgrid.activities import node_files
from rgrid.activities.heartbeats import heartbeating
from rgrid.activities.leases import LeaseBook
from rgrid.activities.runs import RunKeeper, settle
from rgrid.activities.secrets import open_secrets
from rgrid.errors import Failure, RgridError, as_application_error
from rgrid.infra.codec import Keyring
from rgrid.infra.logstore import LogChunkWriter
from rgrid.infra.runtime import RunRequest, Runtime
from rgrid.infra.storage.base import Storage
from rgrid.models.node import (
    Ack,
    ClaimNodeInput,
    CollectOutputsInput,
    CollectOutputsResult,
    ExecuteResult,
    NodeLease,
    ReleaseNodeInput,
    RunContainerInput,
    RunResult,
    StageInputsInput,
    StageInputsResult,
)

log = structlog.get_logger()

LOG_FLUSH_S = 0.5  # how stale live logs may be; also the heartbeat cadence
STAGE_TRIES = 3  # execute's staging, on storage faults


class NodeIdentity(BaseModel):
    """Who this node is, as leases report it."""

    node_id: str
    hourly_price_microns: int = 0


class NodeActivities:
    """The node agent's activities; one instance per node."""

    def __init__(
        self,
        node: NodeIdentity,
        book: LeaseBook,
        runtime: Runtime,
        storage: Storage,
        work_root: Path,
        lease_ttl_s: int = 120,
        keyring: Keyring | None = None,
        abandon_s: int = 1800,
    ) -> None:
        self._node = node
        self._keyring = keyring  # opens the run's sealed secrets
        self._book = book
        self._runtime = runtime
        self._storage = storage
        self._work_root = work_root
        self._ttl = timedelta(seconds=lease_ttl_s)
        self._inputs: dict[str, dict[str, str]] = {}  # lease id -> staged name -> sha256
        self._runs = RunKeeper(timedelta(seconds=abandon_s))

    @activity.defn(name=names.CLAIM_NODE)
    async def claim_node(self, request: ClaimNodeInput) -> NodeLease:
        if self._book.draining:
            # A poll that was out when the node began draining: the retry goes elsewhere.
            raise ApplicationError("node is draining", type=Failure.NODE_DRAINING)
        lease = NodeLease(
            lease_id=f"{request.execution_id}-{request.attempt}-{ULID()}",
            node_id=self._node.node_id,
            queue=names.node_queue(self._node.node_id),
            expires_at=datetime.now(UTC) + timedelta(seconds=request.lease_ttl_s),
            hourly_price_microns=self._node.hourly_price_microns,
            slots=self._book.slots,
            attempt=request.attempt,
        )
        self._book.open(lease)
        log.info("lease_opened", lease=lease.lease_id, free=self._book.free)
        return lease

    @activity.defn(name=names.STAGE_INPUTS)
    async def stage_inputs(self, request: StageInputsInput) -> StageInputsResult:
        work = self.work_dir(request.lease)
        files = [request.script, *request.inputs]
        if self._runs.get(request.lease.lease_id) is not None:
            # A late repeat of staging: the script already runs in this work dir.
            return StageInputsResult(files=len(files), bytes=sum(ref.size for ref in files))
        async with self._held(request.lease):
            shutil.rmtree(work, ignore_errors=True)  # a retried staging starts clean
            work.mkdir(parents=True)
            self.tmp_dir(request.lease).mkdir(parents=True, exist_ok=True)
            try:
                await node_files.stage(self._storage, work, files)
            except RgridError as exc:
                raise as_application_error(exc) from exc
        self._inputs[request.lease.lease_id] = {ref.name: ref.sha256 for ref in files}
        return StageInputsResult(files=len(files), bytes=sum(ref.size for ref in files))

    @activity.defn(name=names.EXECUTE)
    async def execute(self, request: RunContainerInput) -> ExecuteResult:
        """Stage, run and collect as one task, one hop instead of three. Idempotent by
        lease id like its parts: a repeat ask re-attaches to the run, or gets what was
        collected, so a retry after an outage never runs the script twice."""
        lease, spec = request.lease, request.spec
        if (done := self._runs.executed(lease.lease_id)) is not None:
            return done  # a repeat ask: the first answer was lost on its way
        if self._runs.get(lease.lease_id) is None:
            staging = StageInputsInput(lease=lease, execution_id=request.execution_id,
                                       script=spec.script, inputs=spec.inputs)  # fmt: skip
            await heartbeating(self._stage_retried(staging), LOG_FLUSH_S)
        run = await self.run_container(request)
        collected = await heartbeating(
            self._collect(CollectOutputsInput(lease=lease, execution_id=request.execution_id), run),
            LOG_FLUSH_S,
        )
        return ExecuteResult(run=run, outputs=collected)

    async def _stage_retried(self, request: StageInputsInput) -> None:
        """Staging, tried again on a storage fault (a user's error is not retried)."""
        for attempt in range(1, STAGE_TRIES + 1):
            try:
                await self.stage_inputs(request)
                return
            except Exception as exc:
                fatal = isinstance(exc, ApplicationError) and (
                    exc.non_retryable or exc.type == Failure.LEASE_LOST
                )
                if fatal or attempt == STAGE_TRIES:
                    raise
                log.warning("stage_retried", lease=request.lease.lease_id, error=str(exc))
                await asyncio.sleep(attempt)

    @activity.defn(name=names.RUN_CONTAINER)
    async def run_container(self, request: RunContainerInput) -> RunResult:
        """Run the lease's script, or re-attach to its run: idempotent by lease id, so a
        retry after a control-plane or Temporal outage never runs the script twice."""
        lease = request.lease
        self._renew(lease)
        now = datetime.now(UTC)
        kept = self._runs.get(lease.lease_id)
        if kept is None:
            secrets = open_secrets(self._keyring, request.spec)
            logs = LogChunkWriter(
                self._storage, request.execution_id, lease.attempt, redact=secrets.values()
            )
            run = self._run(request, logs, secrets)
            kept = self._runs.start(lease.lease_id, run, logs, now)
        else:
            log.info("run_reattached", lease=lease.lease_id, finished=kept.task.done())
        self._runs.attach(kept, now)
        try:
            while not kept.task.done():
                done, _ = await asyncio.wait({kept.task}, timeout=LOG_FLUSH_S)
                self._renew(lease)
                # Heartbeats carry progress and deliver cancellation. Not one after the
                # end: a short run's only heartbeat was a server write per run for nothing.
                if not done:
                    activity.heartbeat(kept.logs.next_seq)
        except asyncio.CancelledError:
            details = activity.cancellation_details()
            if details is not None and details.cancel_requested:
                await settle(self._runs.drop(lease.lease_id))  # a cancel kills the run
            # Otherwise this attempt timed out or the worker stops: the run goes on, and
            # the workflow's next attempt on this node finds it.
            raise
        finally:
            self._runs.detach(kept, datetime.now(UTC))
        try:
            return kept.task.result()
        except RgridError as exc:
            raise as_application_error(exc) from exc

    async def _run(
        self, request: RunContainerInput, logs: LogChunkWriter, secrets: dict[str, str]
    ) -> RunResult:
        """The script's run itself, owned by the lease rather than by one attempt."""
        lease, spec = request.lease, request.spec
        run = RunRequest(
            execution_id=request.execution_id,
            work_dir=self.work_dir(lease),
            tmp_dir=self.tmp_dir(lease),
            script=spec.script.name,
            args=spec.args,
            env={**spec.env, **secrets},
            requirements=spec.requirements,
            timeout_s=spec.timeout_s,
            resources=spec.resources,
            runtime=spec.runtime,
            image=spec.image,
            default_image=spec.default_image,
            network=spec.network,
            rebuild=spec.no_cache,
            batch_id=spec.batch_id,
        )
        started = datetime.now(UTC)
        task = asyncio.create_task(self._runtime.run(run, logs.write))
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=LOG_FLUSH_S)
                await logs.flush()
            outcome = task.result()
            skipped: list[str] = []
            await asyncio.to_thread(node_files.walk_regular_files, run.work_dir, skipped)
            if skipped:
                # Said in the run's own log, so the user sees why a file did not come back.
                listed = ", ".join(skipped[:20]) + (" ..." if len(skipped) > 20 else "")
                logs.write(
                    "err", f"rgrid: not collected (links or special files): {listed}\n".encode()
                )
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await logs.flush()
        return RunResult(
            exit_code=outcome.exit_code,
            timed_out=outcome.timed_out,
            started_at=started,
            finished_at=datetime.now(UTC),
            runtime=outcome.runtime or self._runtime.name,
            stderr_tail=logs.last_line("err"),
        )

    @activity.defn(name=names.COLLECT_OUTPUTS)
    async def collect_outputs(self, request: CollectOutputsInput) -> CollectOutputsResult:
        return await self._collect(request)

    async def _collect(
        self, request: CollectOutputsInput, run: RunResult | None = None
    ) -> CollectOutputsResult:
        """Collect once, keeping the answer (and execute's `run`) for a repeat ask."""
        taken = self._runs.collected(request.lease.lease_id)
        if taken is not None:
            return taken  # a repeat ask: the first answer was lost on its way
        return await self._runs.collect_once(
            request.lease.lease_id, lambda: self._collect_now(request, run)
        )

    async def _collect_now(
        self, request: CollectOutputsInput, run: RunResult | None
    ) -> CollectOutputsResult:
        work = self.work_dir(request.lease)
        staged = self._inputs.get(request.lease.lease_id, {})
        async with self._held(request.lease):
            result = await node_files.collect(self._storage, work, request.execution_id, staged)
        for skipped in result.skipped:
            log.warning("output_skipped", execution=request.execution_id, path=skipped)
        self._runs.remember_collected(request.lease.lease_id, result, datetime.now(UTC), run)
        self._release(request.lease.lease_id)
        return result

    @activity.defn(name=names.RELEASE_NODE)
    async def release_node(self, request: ReleaseNodeInput) -> Ack:
        await settle(self._release(request.lease.lease_id))
        return Ack()

    async def close(self) -> None:
        """Kill runs still going and release storage connections (the agent is stopping)."""
        await self._runs.close()
        await self._runtime.close()
        await self._storage.aclose()

    def reap_expired(self) -> list[str]:
        """Release leases their executions stopped renewing (the workflow went away).

        A lease whose script runs, or ran and was not collected yet, is kept: during a
        control-plane or Temporal outage nobody renews it, and reaping it would send the
        item to another node to run again. Only `abandon_s` without anyone asking ends it."""
        now = datetime.now(UTC)
        reaped = []
        for lease_id in self._book.expired(now):
            if self._runs.holds(lease_id, now):
                continue
            log.warning(
                "lease_expired", lease=lease_id, had_run=self._runs.get(lease_id) is not None
            )
            self._release(lease_id)
            reaped.append(lease_id)
        self._runs.forget_old_collected(now)
        return reaped

    def work_dir(self, lease: NodeLease) -> Path:
        """The script's working directory for this lease."""
        return self._work_root / lease.lease_id / "work"

    def tmp_dir(self, lease: NodeLease) -> Path:
        """Scratch space outside the work dir, so temp files are not taken for outputs."""
        return self._work_root / lease.lease_id / "tmp"

    @contextlib.asynccontextmanager
    async def _held(self, lease: NodeLease) -> AsyncIterator[None]:
        """Keep the lease renewed while a long transfer runs, so the reaper leaves it be."""
        self._renew(lease)

        async def renew() -> None:
            while True:
                await asyncio.sleep(self._ttl.total_seconds() / 4)
                self._book.extend(lease.lease_id, datetime.now(UTC) + self._ttl)

        keeper = asyncio.create_task(renew())
        try:
            yield
        finally:
            keeper.cancel()

    def _renew(self, lease: NodeLease) -> None:
        if not self._book.extend(lease.lease_id, datetime.now(UTC) + self._ttl):
            # The slot went to someone else: this attempt must move to another node.
            raise ApplicationError(
                f"lease {lease.lease_id} on {lease.node_id} has expired", type=Failure.LEASE_LOST
            )

    def _release(self, lease_id: str) -> asyncio.Task[RunResult] | None:
        """End the lease: kill its run if any (the returned task ends once it is dead)."""
        run = self._runs.drop(lease_id)
        if self._book.close(lease_id) is not None:
            self._inputs.pop(lease_id, None)
            shutil.rmtree(self._work_root / lease_id, ignore_errors=True)
            log.info("lease_released", lease=lease_id, free=self._book.free)
        return run
