"""Turning a command line into an ExecutionSpec: validate paths, upload inputs once,
start the workflow."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
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
from rgrid.cache.key import cache_parts, has_no_cache_marker, spec_key
from rgrid.client.file_args import add_staged, check_readable, looks_like_path, staged_name
from rgrid.client.secrets import seal_all, split_env
from rgrid.client.session import Session
from rgrid.config import Settings
from rgrid.errors import RgridError, UserInputError
from rgrid.images import check_image, default_image
from rgrid.infra.deps import DependencySpec, detect_dependencies
from rgrid.infra.storage.base import Storage, Track, cas_key, sha256_file
from rgrid.infra.temporal import keyring_of
from rgrid.models.execution import ExecutionSpec, ExecutionStatus, FileRef, Resources
from rgrid.names import CONTROL_QUEUE
from rgrid.workflows.visibility import run_summary

SUPPORTED_RUNTIMES = ("auto", "process", "docker")


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
    budget_microns: int | None = None  # --budget: refused when the estimate is above it
    priority: int = 3
    secret_names: list[str] = field(default_factory=list)  # --secret: values from os.environ
    project: str | None = None  # --project; else the settings' project


@dataclass
class UploadReport:
    """How many staged files were sent, and how many storage already had."""

    uploaded: int = 0
    uploaded_bytes: int = 0
    already_stored: int = 0


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
            add_staged(files, name, path)
            args.append(name)
        else:
            args.append(arg)
    for path in request.extra_inputs:
        check_readable(path, "input file")
        add_staged(files, staged_name(path, cwd), path)
    return request.script, args, files


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
    return DryRun(
        args=args,
        files={name: path.stat().st_size for name, path in files.items()},
        dependencies=deps,
        cache_key=spec_key(spec),
        cache_parts=cache_parts(spec).as_json(),
    )


def gather(
    request: RunRequest, cwd: Path
) -> tuple[Path, list[str], dict[str, Path], DependencySpec]:
    """Everything a run stages: the script, its args, its files (siblings included), deps."""
    script, args, files = collect_files(request, cwd)
    deps = detect_dependencies(script)
    for sibling in deps.siblings:  # the script's own modules travel with it
        add_staged(files, sibling, script.parent / sibling)
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
        default_image=settings_image(settings, script.name),
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
        budget_microns=request.budget_microns,
    )


def with_default_image(settings: Settings, spec: ExecutionSpec) -> ExecutionSpec:
    """The spec with its default image resolved; a spec recorded before the field existed
    (`rgrid retry` of an old run) gets these settings' image, like a new run."""
    if spec.default_image is not None:
        return spec
    return spec.model_copy(update={"default_image": settings_image(settings, spec.script.name)})


def settings_image(settings: Settings, script: str) -> str:
    """The image these settings give a run of `script` without --image."""
    return default_image(script, settings.python_image, settings.node_image)


async def serve_from_cache(session: Session, spec: ExecutionSpec) -> ExecutionStatus | None:
    """A new execution answered by a live cache entry, recorded as such; None on a miss.
    Nothing starts: no workflow, no node (and no embedded stack)."""
    cache = await session.result_cache()
    found = await cache.lookup(spec)
    if found.hit is None:
        return None
    return await cache.serve(spec, found.hit, names.new_execution_id())


async def start(
    session: Session, spec: ExecutionSpec, execution_id: str | None = None
) -> WorkflowHandle[Any, ExecutionStatus]:
    """Start the ExecutionWorkflow for a prepared spec (inputs are already stored).

    A cacheable run gets an id derived from its cache key and the number of its key's
    runs that have ended, and joins a running workflow with that id: identical runs in
    flight (two terminals, a CLI retry after a network drop) share one execution."""
    client = await session.temporal()
    spec = with_default_image(session.settings, spec)
    key = None if spec.no_cache else spec_key(spec)
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
        # With an id of the caller's, a start retried after a lost answer joins the first.
        return await client.start_workflow(
            "ExecutionWorkflow",
            spec,
            id=execution_id or names.new_execution_id(),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            **options,
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


async def start_riding_out(session: Session, spec: ExecutionSpec) -> str:
    """Start the run, retrying while the control plane is away; its execution id. The id
    is chosen once, so a retry whose first try got through joins that execution."""
    execution_id = names.new_execution_id()
    handle = await session.blips.call(lambda: start(session, spec, execution_id))
    return handle.id
