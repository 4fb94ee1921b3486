"""rgrid for other Python services: the same settings, storage and workflows as the CLI.

    async with await RgridClient.connect() as rgrid:
        run = await rgrid.run(Path("job.py"), ["data/doc.txt"], secrets=["API_TOKEN"])
        status = await rgrid.follow(run.execution_id)
        paths = await rgrid.fetch_outputs(status, Path("outputs"))

Every method is a thin call into rgrid.client, the code the CLI runs. Services in other
languages use the wire contract in docs/api.md instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from rgrid.client import submit, watch
from rgrid.client.outputs import download_outputs
from rgrid.client.session import Session
from rgrid.config import Settings, load_settings
from rgrid.infra.logstore import LogRecord
from rgrid.models.execution import ExecutionSpec, ExecutionStatus, FileRef

__all__ = ["ExecutionSpec", "ExecutionStatus", "FileRef", "RgridClient", "Run"]


@dataclass
class Run:
    """A started (or cache-answered) execution."""

    execution_id: str
    spec: ExecutionSpec
    uploaded_files: int
    cached: ExecutionStatus | None = None  # answered from the result cache: already done


@dataclass
class RgridClient:
    """A connection to one rgrid deployment (RGRID_* settings, or explicit ones)."""

    session: Session
    _closed: bool = field(default=False, init=False)

    @classmethod
    async def connect(cls, settings: Settings | None = None) -> RgridClient:
        """Connect with the given settings, else the same ones the CLI would use."""
        config = settings or load_settings()
        session = Session(config, lambda: _ensure_stack(config))
        await session.temporal()  # fail here, not at the first call, if Temporal is away
        return cls(session)

    async def upload(self, path: Path, name: str | None = None) -> FileRef:
        """Store a file content-addressed (once) and return its reference."""
        refs, _ = await submit.upload_files(self.session.storage, {name or path.name: path})
        return refs[0]

    async def run(
        self,
        script: Path,
        args: list[str] | None = None,
        *,
        inputs: list[Path] | None = None,
        env: dict[str, str] | None = None,
        secrets: list[str] | None = None,
        tags: dict[str, str] | None = None,
        project: str | None = None,
        timeout_s: int | None = None,
        no_cache: bool = False,
        cwd: Path | None = None,
    ) -> Run:
        """Upload the script and its inputs and start it, as `rgrid run` does. `secrets`
        names variables of this process's environment, passed sealed."""
        request = submit.RunRequest(
            script=script,
            args=args or [],
            extra_inputs=inputs or [],
            env=env or {},
            tags=tags or {},
            timeout_s=timeout_s,
            no_cache=no_cache,
            secret_names=secrets or [],
            project=project,
        )
        spec, report = await submit.prepare(self.session, request, cwd or Path.cwd())
        return await self.start(spec, report.uploaded)

    async def start(self, spec: ExecutionSpec, uploaded_files: int = 0) -> Run:
        """Start a spec whose files are already stored (see `upload`)."""
        cached = await submit.serve_from_cache(self.session, spec)
        if cached is not None:
            return Run(cached.execution_id, spec, uploaded_files, cached)
        handle = await submit.start(self.session, spec)
        return Run(handle.id, spec, uploaded_files)

    async def follow(
        self, execution_id: str, on_log: Callable[[LogRecord], None] | None = None
    ) -> ExecutionStatus:
        """Wait for the execution's end (streaming its log records to `on_log`)."""
        return await watch.wait_for_result(self.session, execution_id, on_log)

    async def status(self, execution_id: str) -> ExecutionStatus:
        """Its status now: live while it runs, from the ledger after."""
        return await watch.current_status(self.session, execution_id)

    async def fetch_outputs(self, status: ExecutionStatus, target: Path) -> list[Path]:
        """Download an ended execution's outputs under `target`; the written paths."""
        written, _ = await download_outputs(self.session.storage, status, target)
        return written

    async def cancel(self, execution_id: str) -> ExecutionStatus:
        """Cancel it (the script is killed) and return its final status."""
        return await watch.cancel(self.session, execution_id)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.session.close()

    async def __aenter__(self) -> RgridClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _ensure_stack(settings: Settings) -> None:
    """With nothing configured, start the embedded stack as the CLI does."""
    from rgrid.client.stack import read_stack, start_stack

    if read_stack(settings) is None:
        start_stack(settings, workers=False)  # what is started waits for the workers
