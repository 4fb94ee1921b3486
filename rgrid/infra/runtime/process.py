"""The process runtime: the script runs as a subprocess in its own session, in a venv
built with uv for its dependency set, with a scrubbed environment and OS limits.

It isolates less than a container (same user, same filesystem) and is meant for the
embedded default on a laptop or CI; the docker runtime is the isolating one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import resource
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from uv import find_uv_bin

from rgrid.errors import DependencyInstallError, UserInputError
from rgrid.images import NODE_SUFFIXES
from rgrid.infra.deps import layer_key
from rgrid.infra.runtime.base import OutputSink, RunOutcome, RunRequest

log = structlog.get_logger()

KILL_GRACE_S = 2.0
PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


class ProcessRuntime:
    """Runs scripts as local subprocesses; venvs are cached per dependency set."""

    name = "process"

    def __init__(self, cache_dir: Path, python: str = sys.executable) -> None:
        self._venvs = cache_dir / "venvs"
        self._npm = cache_dir / "npm"
        self._python = python
        self._building: dict[str, asyncio.Lock] = {}

    async def run(self, request: RunRequest, sink: OutputSink) -> RunOutcome:
        argv, path_dirs = await self._command(request)
        env = {
            "PATH": os.pathsep.join([*path_dirs, "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(request.work_dir),
            "TMPDIR": str(request.tmp_dir),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",  # so output streams live instead of at exit
            **request.env,
            "RGRID_EXECUTION_ID": request.execution_id,
        }
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=request.work_dir,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group, so we can kill all it starts
            preexec_fn=_limits(request),
        )
        assert proc.stdout and proc.stderr
        pumps = [
            asyncio.create_task(_pump(proc.stdout, "out", sink)),
            asyncio.create_task(_pump(proc.stderr, "err", sink)),
        ]
        try:
            async with asyncio.timeout(request.timeout_s):
                exit_code = await proc.wait()
                # Children left behind would hold the pipes open: end them, then drain.
                await _kill_group(proc)
                await asyncio.gather(*pumps)
            return RunOutcome(exit_code=exit_code, runtime=self.name)
        except TimeoutError:
            await _kill_group(proc)
            return RunOutcome(exit_code=None, timed_out=True, runtime=self.name)
        finally:
            # Also on cancellation: nothing the script started may outlive the run.
            await _kill_group(proc)
            for pump in pumps:
                pump.cancel()

    async def _command(self, request: RunRequest) -> tuple[list[str], list[str]]:
        if request.script.endswith(NODE_SUFFIXES):
            node = shutil.which("node")
            if node is None:
                raise UserInputError(
                    "this node has no Node.js for a .js script",
                    "install node or use --runtime docker",
                )
            if request.requirements:
                modules = await self.npm_for(request.requirements, request.rebuild)
                # Node looks for node_modules in every parent of the script (CommonJS and
                # ES modules alike), and the lease dir above the work dir is ours alone.
                link = request.work_dir.parent / "node_modules"
                link.unlink(missing_ok=True)
                link.symlink_to(modules / "node_modules")
            return [node, request.script, *request.args], []
        venv = await self.venv_for(request.requirements, request.rebuild)
        return [str(venv / "bin" / "python"), request.script, *request.args], [str(venv / "bin")]

    async def venv_for(self, requirements: list[str], rebuild: bool = False) -> Path:
        """The venv for a dependency set, built once per node and reused."""
        key = layer_key(requirements, self._python)[:24]
        return await self._layer(self._venvs / key, rebuild, self._build_venv, requirements)

    async def npm_for(self, requirements: list[str], rebuild: bool = False) -> Path:
        """A dir whose node_modules holds an npm dependency set, built once per node."""
        key = layer_key(requirements, "npm")[:24]
        return await self._layer(self._npm / key, rebuild, _install_npm, requirements)

    async def _layer(
        self,
        target: Path,
        rebuild: bool,
        build: Callable[[Path, list[str], bool], Awaitable[None]],
        requirements: list[str],
    ) -> Path:
        """Build `target` once (or again, when asked), under a temporary name, then move it
        into place, so a half-built layer is never used."""
        if (target / ".complete").exists() and not rebuild:
            return target
        lock = self._building.setdefault(str(target), asyncio.Lock())
        async with lock:  # concurrent runs needing the same new layer build it once
            if rebuild or not (target / ".complete").exists():
                building = target.with_name(target.name + f".building-{os.getpid()}")
                shutil.rmtree(building, ignore_errors=True)
                await build(building, requirements, rebuild)
                (building / ".complete").touch()
                shutil.rmtree(target, ignore_errors=True)
                building.rename(target)
                log.info("layer_built", path=str(target), requirements=requirements)
        return target

    async def _build_venv(self, building: Path, requirements: list[str], refresh: bool) -> None:
        uv = find_uv_bin()
        # --relocatable: the venv is built under a temporary name, then renamed into place.
        await _check_call(
            [uv, "venv", "--quiet", "--relocatable", "--python", self._python, str(building)]
        )
        if requirements:
            python = str(building / "bin" / "python")
            await _check_call(
                [
                    *(uv, "pip", "install", "--quiet", "--python", python),
                    *(["--refresh"] if refresh else []),
                    *requirements,
                ],
                install_error=", ".join(requirements),
            )


async def _install_npm(building: Path, requirements: list[str], refresh: bool) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise UserInputError(
            "this node has no npm to install the script's package.json dependencies",
            "install npm on the node, or use --runtime docker with a Node image",
        )
    building.mkdir(parents=True)
    await _check_call(
        [
            *(npm, "install", "--prefix", str(building), "--no-audit", "--no-fund"),
            *("--omit=dev", "--no-package-lock", "--loglevel=error"),
            *(["--prefer-online"] if refresh else []),
            *requirements,  # validated name@range pairs, never paths or URLs (deps.py)
        ],
        install_error=", ".join(requirements),
    )


def _limits(request: RunRequest):  # type: ignore[no-untyped-def]
    memory = request.resources.memory_mb * 1024 * 1024
    cpu_seconds = int(request.timeout_s * max(request.resources.cpus, 1)) + 5

    def apply() -> None:
        # Runs in the child between fork and exec: only async-signal-safe work here.
        # If the agent dies, the script dies with it instead of running on unowned.
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))

    return apply


async def _pump(stream: asyncio.StreamReader, name: str, sink: OutputSink) -> None:
    while chunk := await stream.read(65536):
        sink(name, chunk)  # type: ignore[arg-type]


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    if proc.returncode is None:
        try:
            async with asyncio.timeout(KILL_GRACE_S):
                await proc.wait()
        except TimeoutError:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.returncode is None:
        await proc.wait()


async def _check_call(argv: list[str], install_error: str = "") -> None:
    # Trust the platform's certificate store too (a node behind a TLS-inspecting proxy).
    env = {**os.environ, "UV_SYSTEM_CERTS": "1"}
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        tail = "; ".join(out.decode(errors="replace").strip().splitlines()[-3:])
        if install_error:
            raise DependencyInstallError(
                f"installing {install_error} failed", tail or "see the node's log"
            )
        raise RuntimeError(f"{argv[0]} failed: {tail}")
