"""Turning a command line into an ExecutionSpec: validate paths, upload inputs once,
start the workflow."""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from ulid import ULID

from rgrid.activities import names
from rgrid.activities.names import CONTROL_QUEUE
from rgrid.client.session import Session
from rgrid.errors import UserInputError
from rgrid.infra.deps import DependencySpec, detect_dependencies
from rgrid.infra.runtime.docker import check_image
from rgrid.infra.storage import Storage, cas_key, sha256_file
from rgrid.models import ExecutionSpec, ExecutionStatus, FileRef, Resources

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


async def upload_files(
    storage: Storage, files: dict[str, Path]
) -> tuple[list[FileRef], UploadReport]:
    """Hash every file and upload the contents storage does not have yet."""
    report = UploadReport()

    async def one(name: str, path: Path) -> FileRef:
        digest = await asyncio.to_thread(sha256_file, path)
        size = path.stat().st_size
        key = cas_key(digest)
        if await storage.exists(key):
            report.already_stored += 1
        else:
            await storage.put_file(key, path)
            report.uploaded += 1
            report.uploaded_bytes += size
        executable = os.access(path, os.X_OK)
        return FileRef(
            name=PurePosixPath(name).as_posix(), sha256=digest, size=size, executable=executable
        )

    refs = await asyncio.gather(*(one(name, path) for name, path in files.items()))
    return list(refs), report


@dataclass
class DryRun:
    """What a run would stage and install; nothing is uploaded or started."""

    args: list[str]
    files: dict[str, int]  # staged name -> size
    dependencies: DependencySpec


def dry_run(request: RunRequest, cwd: Path) -> DryRun:
    """Validate and detect as a real run would, and report instead of starting."""
    _, args, files, deps = gather(request, cwd)
    return DryRun(
        args=args,
        files={name: path.stat().st_size for name, path in files.items()},
        dependencies=deps,
    )


def gather(
    request: RunRequest, cwd: Path
) -> tuple[Path, list[str], dict[str, Path], DependencySpec]:
    """Everything a run stages: the script, its args, its files (siblings included), deps."""
    script, args, files = collect_files(request, cwd)
    deps = detect(script)
    for sibling in deps.siblings:  # the script's own modules travel with it
        _add(files, sibling, script.parent / sibling)
    return script, args, files, deps


def detect(script: Path) -> DependencySpec:
    """The script's dependencies, refusing what the process runtime cannot install."""
    deps = detect_dependencies(script)
    if deps.language == "node" and deps.requirements:
        raise UserInputError(
            f"{script.name} needs npm packages ({', '.join(deps.requirements)})",
            "rgrid does not install npm packages yet; vendor them beside the script",
        )
    return deps


def new_execution_id() -> str:
    """A fresh, time-ordered execution id."""
    return f"exec-{str(ULID()).lower()}"


async def prepare(
    session: Session, request: RunRequest, cwd: Path
) -> tuple[ExecutionSpec, UploadReport]:
    """Validate, upload, and build the spec; nothing is started yet."""
    settings = session.settings
    runtime = request.runtime or settings.runtime
    if runtime not in SUPPORTED_RUNTIMES:
        raise UserInputError(
            f"unknown runtime {runtime!r}",
            "use auto, process or docker; pick an image with --image",
        )
    if request.image is not None:
        check_image(request.image)
    script, args, files, deps = gather(request, cwd)
    refs, report = await upload_files(session.storage, files)
    script_ref = next(ref for ref in refs if ref.name == script.name)
    spec = ExecutionSpec(
        script=script_ref,
        args=args,
        inputs=[ref for ref in refs if ref is not script_ref],
        runtime=runtime,
        image=request.image,
        network=request.network,
        requirements=deps.requirements,
        env=request.env,
        timeout_s=request.timeout_s or settings.timeout_s,
        resources=Resources(
            cpus=request.cpus or settings.cpus, memory_mb=request.memory_mb or settings.memory_mb
        ),
        tags=request.tags,
        project=settings.project,
        node_class=settings.node_class,
        retries=request.retries,
        max_node_attempts=settings.max_node_attempts,
        queue_timeout_s=settings.queue_timeout_s,
        heartbeat_timeout_s=settings.heartbeat_timeout_s,
    )
    return spec, report


async def start(
    session: Session, spec: ExecutionSpec, execution_id: str | None = None
) -> WorkflowHandle[Any, ExecutionStatus]:
    """Start the ExecutionWorkflow for a prepared spec (inputs are already stored)."""
    client = await session.temporal()
    # By name: importing the workflow module would only slow the CLI down.
    return await client.start_workflow(
        "ExecutionWorkflow",
        spec,
        result_type=ExecutionStatus,
        id=execution_id or new_execution_id(),
        task_queue=CONTROL_QUEUE,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(names.PROJECT_ATTRIBUTE, spec.project),
                SearchAttributePair(names.SCRIPT_ATTRIBUTE, spec.script.name),
            ]
        ),
    )
