"""Turning a command line into an ExecutionSpec: validate paths, upload inputs once,
start the workflow."""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from rgrid import names
from rgrid.cache.key import cache_parts, default_image, has_no_cache_marker, spec_key
from rgrid.client.secrets import seal_all, split_env
from rgrid.client.session import Session
from rgrid.config import Settings
from rgrid.errors import RgridError, UserInputError
from rgrid.infra.deps import DependencySpec, detect_dependencies
from rgrid.infra.runtime.docker import check_image
from rgrid.infra.storage.base import Storage, Track, cas_key, sha256_file
from rgrid.infra.temporal import keyring_of
from rgrid.models.execution import ExecutionSpec, ExecutionStatus, FileRef, Phase, Resources
from rgrid.names import CONTROL_QUEUE
from rgrid.workflows.visibility import run_summary

# An argument "looks like a path" when it has a separator or ends in a file extension;
# such an argument must exist, so a typo fails here instead of inside the script.
SUPPORTED_RUNTIMES = ("auto", "process", "docker")
_EXTENSION = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,7}$")


@dataclass
class RunRequest:
    """What the user asked for on the command line."""

    script: Path
    args: list[str] = field(default_factory=list)
    extra_inputs: list[Path] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    timeout_s: int | None = None
    cpus: float | None = None
    memory_mb: int | None = None
    runtime: str | None = None
    image: str | None = None
    network: bool = True
    retries: int = 0
    no_cache: bool = False
    priority: int = 3
    secret_names: list[str] = field(default_factory=list)  # --secret: values from os.environ
    project: str | None = None  # --project; else the settings' project


@dataclass
class UploadReport:
    """How many staged files were sent, and how many storage already had."""

    uploaded: int = 0
    uploaded_bytes: int = 0
    already_stored: int = 0


def looks_like_path(arg: str) -> bool:
    """True for arguments a user most likely meant as a file."""
    if arg.startswith("-") or "://" in arg:
        return False
    try:
        float(arg)
        return False
    except ValueError:
        pass
    return "/" in arg or bool(_EXTENSION.search(arg))


def staged_name(path: Path, cwd: Path) -> str:
    """Where a local file appears in the work dir: its relative path if it lies under the
    current directory, else its bare name."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(cwd.resolve()).as_posix()
    except ValueError:
        return path.name


def check_readable(path: Path, what: str) -> None:
    if not path.exists():
        raise UserInputError(f"{what} not found: {path}", "check the path")
    if path.is_dir():
        raise UserInputError(f"{what} is a directory: {path}", "pass a file")
    if not os.access(path, os.R_OK):
        raise UserInputError(f"{what} is not readable: {path}", "check its permissions")


def collect_files(request: RunRequest, cwd: Path) -> tuple[Path, list[str], dict[str, Path]]:
    """Validate the script and file arguments; returns the script, the args as the script
    will see them, and the staged name of every file to upload."""
    check_readable(request.script, "script")
    files: dict[str, Path] = {request.script.name: request.script}
    args: list[str] = []
    for arg in request.args:
        path = Path(arg)
        if path.exists() or looks_like_path(arg):
            check_readable(path, "input file")
            name = staged_name(path, cwd)
            _add(files, name, path)
            args.append(name)
        else:
            args.append(arg)
    for path in request.extra_inputs:
        check_readable(path, "input file")
        _add(files, staged_name(path, cwd), path)
    return request.script, args, files


def _add(files: dict[str, Path], name: str, path: Path) -> None:
    existing = files.get(name)
    if existing is not None and existing.resolve() != path.resolve():
        raise UserInputError(
            f"two inputs would both be staged as {name!r}: {existing} and {path}",
            "rename one of them",
        )
    files[name] = path


async def hash_files(files: dict[str, Path]) -> list[FileRef]:
    """What each file will be in the work dir: name, content hash, size, mode."""

    def one(name: str, path: Path) -> FileRef:
        return FileRef(
            name=PurePosixPath(name).as_posix(),
            sha256=sha256_file(path),
            size=path.stat().st_size,
            executable=os.access(path, os.X_OK),
        )

    return list(
        await asyncio.gather(*(asyncio.to_thread(one, name, path) for name, path in files.items()))
    )


async def upload_files(
    storage: Storage, files: dict[str, Path], track: Track | None = None
) -> tuple[list[FileRef], UploadReport]:
    """Hash every file and upload the contents storage does not have yet."""
    refs = await hash_files(files)
    report = UploadReport()

    async def upload(ref: FileRef, path: Path) -> None:
        key = cas_key(ref.sha256)
        # keep(): a stored input counts as used now, so it expires after its last use.
        if await storage.keep(key):
            report.already_stored += 1
        else:
            await storage.put_file(key, path, track(ref.name, ref.size) if track else None)
            report.uploaded += 1
            report.uploaded_bytes += ref.size

    try:
        await asyncio.gather(*(upload(ref, files[ref.name]) for ref in refs))
    finally:
        if track is not None:
            track.close()
    return refs, report


@dataclass
class DryRun:
    """What a run would stage and install, and its cache key; nothing is uploaded or
    started."""

    args: list[str]
    files: dict[str, int]  # staged name -> size
    dependencies: DependencySpec
    cache_key: str | None  # None: the script opts out of caching
    cache_parts: dict[str, Any]


async def dry_run(settings: Settings, request: RunRequest, cwd: Path) -> DryRun:
    """Validate and detect as a real run would, and report instead of starting."""
    script, args, files, deps = gather(request, cwd)
    spec = build_spec(settings, request, script, args, await hash_files(files), deps)
    parts = cache_parts(spec, default_image(spec, settings.python_image, settings.node_image))
    return DryRun(
        args=args,
        files={name: path.stat().st_size for name, path in files.items()},
        dependencies=deps,
        cache_key=key_of(settings, spec),
        cache_parts=parts,
    )


def key_of(settings: Settings, spec: ExecutionSpec) -> str | None:
    """The spec's result cache key with these settings' default images."""
    return spec_key(spec, settings.python_image, settings.node_image)


def gather(
    request: RunRequest, cwd: Path
) -> tuple[Path, list[str], dict[str, Path], DependencySpec]:
    """Everything a run stages: the script, its args, its files (siblings included), deps."""
    script, args, files = collect_files(request, cwd)
    deps = detect_dependencies(script)
    for sibling in deps.siblings:  # the script's own modules travel with it
        _add(files, sibling, script.parent / sibling)
    return script, args, files, deps


async def prepare(
    session: Session, request: RunRequest, cwd: Path
) -> tuple[ExecutionSpec, UploadReport]:
    """Validate, upload, and build the spec; nothing is started yet."""
    script, args, files, deps = gather(request, cwd)
    refs, report = await upload_files(session.storage, files, session.track)
    return build_spec(session.settings, request, script, args, refs, deps), report


def build_spec(
    settings: Settings,
    request: RunRequest,
    script: Path,
    args: list[str],
    refs: list[FileRef],
    deps: DependencySpec,
) -> ExecutionSpec:
    """The ExecutionSpec of a request whose files are `refs`."""
    runtime = request.runtime or settings.runtime
    if runtime not in SUPPORTED_RUNTIMES:
        raise UserInputError(
            f"unknown runtime {runtime!r}",
            "use auto, process or docker; pick an image with --image",
        )
    if request.image is not None:
        check_image(request.image)
    script_ref = next(ref for ref in refs if ref.name == script.name)
    env, plain_secrets = split_env(request.env, request.secret_names, os.environ)
    sealed, digest = seal_all(keyring_of(settings), plain_secrets)
    return ExecutionSpec(
        script=script_ref,
        args=args,
        inputs=[ref for ref in refs if ref is not script_ref],
        runtime=runtime,
        image=request.image,
        network=request.network,
        requirements=deps.requirements,
        env=env,
        secrets=sealed,
        secrets_digest=digest,
        timeout_s=request.timeout_s or settings.timeout_s,
        resources=Resources(
            cpus=request.cpus or settings.cpus, memory_mb=request.memory_mb or settings.memory_mb
        ),
        tags=request.tags,
        project=request.project or settings.project,
        priority=request.priority,
        node_class=settings.node_class,
        retries=request.retries,
        max_node_attempts=settings.max_node_attempts,
        queue_timeout_s=settings.queue_timeout_s,
        heartbeat_timeout_s=settings.heartbeat_timeout_s,
        cacheable=not has_no_cache_marker(script.read_text(errors="replace")),
        no_cache=request.no_cache,
        pool_id=settings.pool_id,
    )


async def serve_from_cache(session: Session, spec: ExecutionSpec) -> ExecutionStatus | None:
    """A new execution answered by a live cache entry, recorded as such; None on a miss.
    Nothing starts: no workflow, no node (and no embedded stack)."""
    key = key_of(session.settings, spec)
    if key is None or spec.no_cache:
        return None
    hit = await (await session.result_cache()).lookup(key)
    if hit is None:
        return None
    now = datetime.now(UTC)
    status = ExecutionStatus(
        execution_id=names.new_execution_id(),
        phase=Phase.SUCCEEDED,
        script=spec.script.name,
        args=spec.args,
        tags=spec.tags,
        project=spec.project,
        exit_code=0,
        created_at=now,
        finished_at=now,
        outputs=hit.outputs,
        cache_key=key,
        cached=True,
        cached_from=hit.execution_id,
    )
    await (await session.ledger()).upsert(status)
    return status


async def start(session: Session, spec: ExecutionSpec) -> WorkflowHandle[Any, ExecutionStatus]:
    """Start the ExecutionWorkflow for a prepared spec (inputs are already stored).

    A cacheable run gets an id derived from its cache key and the number of its key's
    runs that have ended, and joins a running workflow with that id: identical runs in
    flight (two terminals, a CLI retry after a network drop) share one execution."""
    client = await session.temporal()
    key = None if spec.no_cache else key_of(session.settings, spec)
    options: dict[str, Any] = {
        "result_type": ExecutionStatus,
        "task_queue": CONTROL_QUEUE,
        "search_attributes": TypedSearchAttributes(
            [
                SearchAttributePair(names.PROJECT_ATTRIBUTE, spec.project),
                SearchAttributePair(names.SCRIPT_ATTRIBUTE, spec.script.name),
            ]
        ),
        "static_summary": run_summary(spec),
    }
    # By name: importing the workflow module would only slow the CLI down.
    if key is None:
        return await client.start_workflow(
            "ExecutionWorkflow", spec, id=names.new_execution_id(), **options
        )
    cache = await session.result_cache()
    for _ in range(DEDUP_START_TRIES):
        generation = await cache.runs_ended(key)
        try:
            return await client.start_workflow(
                "ExecutionWorkflow",
                spec,
                id=names.dedup_execution_id(key, generation),
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                **options,
            )
        except WorkflowAlreadyStartedError:
            continue  # that run ended just now; its successor's id is one further on
    raise RgridError(
        "could not start the run: its identical predecessors keep ending", "run it again"
    )


DEDUP_START_TRIES = 5
