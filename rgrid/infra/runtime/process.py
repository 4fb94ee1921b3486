"""The process runtime: the script runs in a venv (or with node_modules) built with uv for
its dependency set, inside a bubblewrap sandbox (sandbox.py) where the node allows one,
with memory and process bounds counting the whole run (bounds.py).

Where bubblewrap cannot run, the node says so once and each run says so in its log; the
run still drops root, gets its own session and process group, is bounded by a cgroup (or
a memory monitor and rlimits) and has every process it started killed at its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from uv import find_uv_bin

from rgrid.errors import EnvironmentBroken, UserInputError
from rgrid.images import NODE_SUFFIXES
from rgrid.infra.deps import layer_key
from rgrid.infra.runtime import bounds, child
from rgrid.infra.runtime.base import OutputSink, RunOutcome, RunRequest
from rgrid.infra.runtime.child import ALLOW_UNSANDBOXED, PIDS_LIMIT
from rgrid.infra.runtime.layers import LayerStore
from rgrid.infra.runtime.sandbox import NOBODY, WORK, probe_bwrap, sandbox_argv

log = structlog.get_logger()

DRAIN_S = 1.0  # after every process of the run is dead, how long its output may trail
VENV = "/rgrid/venv"  # where the sandbox shows the venv layer


@dataclass
class _Command:
    argv: list[str]
    path_dirs: list[str] = field(default_factory=list)
    read_only: list[tuple[Path, str]] = field(default_factory=list)  # host path -> sandbox
    layer: tuple[str, str] | None = None  # (host path, sandbox path) of the venv layer

    def inside(self) -> _Command:
        """The same command as the sandbox sees its paths."""
        if self.layer is None:
            return self
        host, target = self.layer

        def move(path: str) -> str:
            return target + path[len(host) :] if path.startswith(host) else path

        return _Command([move(a) for a in self.argv], [move(p) for p in self.path_dirs])


class ProcessRuntime:
    """Runs scripts as local subprocesses, sandboxed; layers are versioned per node."""

    name = "process"

    def __init__(
        self,
        cache_dir: Path,
        python: str = sys.executable,
        sandbox: bool = True,
        allow_unsandboxed: bool | None = None,
        hide: list[Path] | None = None,
        cgroups: bool = True,
    ) -> None:
        self._layer_root = cache_dir / "layers"
        self._python = python
        self._cgroups = cgroups  # False: the memory monitor and rlimits, as where none is writable
        self._layers = LayerStore(remove=child.remove_dir)
        # rgrid's own dirs: never visible in a sandbox (masked where under a system dir).
        self._hide = [cache_dir.parent, *(hide or [])]
        self._bwrap, why = probe_bwrap() if sandbox else (None, "the sandbox is turned off")
        self._bounders = child.Bounders.find()
        if allow_unsandboxed is None:
            allow_unsandboxed = os.environ.get(ALLOW_UNSANDBOXED, "") in ("1", "true", "yes")
        self._allow_unsandboxed = allow_unsandboxed
        if self._bwrap is not None:
            self.isolation = "process runtime in a bubblewrap sandbox"
            log.info("process_runtime", isolation=self.isolation)
        else:
            self.isolation = f"process runtime without isolation ({why})"
            log.warning("process_runtime", isolation=self.isolation)
        self._adopt_layers()

    @property
    def sandboxed(self) -> bool:
        """True when runs get the bubblewrap sandbox on this node."""
        return self._bwrap is not None

    @property
    def layer_builds(self) -> int:
        """Dependency layers this runtime has built since it started."""
        return self._layers.builds

    def held_layers(self, key: str) -> dict[str, int]:
        """Versions of a layer key that runs hold now (for tests and status)."""
        return self._layers.held(key)

    async def close(self) -> None:
        """Nothing to let go of: nothing a run starts outlives it."""

    async def run(self, request: RunRequest, sink: OutputSink) -> RunOutcome:
        async with self._command(request) as command:
            return await self._spawn(request, sink, command)

    @contextlib.asynccontextmanager
    async def _command(self, request: RunRequest) -> AsyncIterator[_Command]:
        if request.script.endswith(NODE_SUFFIXES):
            async with self._node_command(request) as command:
                yield command
            return
        key = "venv-" + layer_key(request.requirements, self._python)[:24]

        async def build() -> str:
            path = self._new_version(key)
            await self._build_venv(path, request.requirements, request.rebuild)
            return str(path)

        async with self._layers.hold(key, build, request.rebuild, request.batch_id) as version:
            venv = Path(version)
            home = child.venv_home(venv)
            if home is None or not os.access(venv / "bin" / "python", os.X_OK):
                await self._layers.discard(key, version)
                raise EnvironmentBroken(
                    f"the venv layer {venv.name} of {key} is broken", "a retry builds it afresh"
                )
            python = str(venv / "bin" / "python")
            yield _Command(
                argv=[python, request.script, *request.args],
                path_dirs=[str(venv / "bin")],
                # The interpreter's own prefix (pyvenv.cfg's home is its bin dir).
                read_only=[(venv, VENV), (home.parent, str(home.parent))],
                layer=(str(venv), VENV),
            )

    @contextlib.asynccontextmanager
    async def _node_command(self, request: RunRequest) -> AsyncIterator[_Command]:
        node = shutil.which("node")
        if node is None:
            raise UserInputError(
                "this node has no Node.js for a .js script", "install node or use --runtime docker"
            )
        prefix = Path(node).resolve().parent.parent
        command = _Command(argv=[node, request.script, *request.args])
        command.read_only.append((prefix, str(prefix)))
        if not request.requirements:
            yield command
            return
        key = "npm-" + layer_key(request.requirements, "npm")[:24]

        async def build() -> str:
            path = self._new_version(key)
            await child.install_npm(path, request.requirements, request.rebuild)
            return str(path)

        async with self._layers.hold(key, build, request.rebuild, request.batch_id) as version:
            modules = Path(version) / "node_modules"
            if not modules.is_dir():
                await self._layers.discard(key, version)
                raise EnvironmentBroken(f"the npm layer of {key} is broken", "a retry rebuilds it")
            # Node looks for node_modules in every parent of the script: in the sandbox at
            # /node_modules; without it, beside the work dir (the lease dir is ours alone).
            command.read_only.append((modules, "/node_modules"))
            link = request.work_dir.parent / "node_modules"
            link.unlink(missing_ok=True)
            link.symlink_to(modules)
            yield command

    async def venv_for(self, requirements: list[str], rebuild: bool = False) -> Path:
        """The current venv for a dependency set (built if missing), not held by a run."""
        key = "venv-" + layer_key(requirements, self._python)[:24]

        async def build() -> str:
            path = self._new_version(key)
            await self._build_venv(path, requirements, rebuild)
            return str(path)

        async with self._layers.hold(key, build, rebuild) as version:
            return Path(version)

    def _new_version(self, key: str) -> Path:
        # Versions sort by creation; a new one never reuses an old one's path.
        return self._layer_root / key / f"{time.time_ns():020d}-{os.getpid()}"

    def _adopt_layers(self) -> None:
        """Take the newest complete version of each layer on disk as current; the rest is
        left over from an earlier agent of this node (no run holds it) and removed."""
        if not self._layer_root.is_dir():
            return
        for key_dir in self._layer_root.iterdir():
            versions = sorted(key_dir.iterdir()) if key_dir.is_dir() else []
            complete = [v for v in versions if (v / ".complete").exists()]
            for version in versions:
                if complete and version == complete[-1]:
                    self._layers.adopt(key_dir.name, str(version))
                else:
                    shutil.rmtree(version, ignore_errors=True)

    async def _build_venv(self, path: Path, requirements: list[str], refresh: bool) -> None:
        uv = find_uv_bin()
        try:
            # --relocatable: the sandbox binds the venv at /rgrid/venv.
            await child.check_call(
                [uv, "venv", "--quiet", "--relocatable", "--python", self._python, str(path)]
            )
        except RuntimeError as exc:
            raise EnvironmentBroken(f"could not make a venv: {exc}", "see the node's log") from exc
        if requirements:
            python = str(path / "bin" / "python")
            await child.check_call(
                [
                    *(uv, "pip", "install", "--quiet", "--python", python),
                    *(["--refresh"] if refresh else []),
                    *requirements,
                ],
                install_error=", ".join(requirements),
            )
        child.readable_by_all(path)
        (path / ".complete").touch()

    async def _spawn(self, request: RunRequest, sink: OutputSink, command: _Command) -> RunOutcome:
        memory = request.resources.memory_mb * 1024 * 1024
        marker = f"RGRID_RUN={request.execution_id}-{os.urandom(6).hex()}"
        cgroup = (
            bounds.make_cgroup(marker.partition("=")[2], memory, PIDS_LIMIT)
            if self._cgroups
            else None
        )
        child.give_to_nobody(request.work_dir, request.tmp_dir)
        drop_root = False
        if self._bwrap is not None:
            command = _Command(command.inside().argv, command.inside().path_dirs, command.read_only)
        elif os.geteuid() == 0:
            needed = [request.work_dir, request.tmp_dir, Path(command.argv[0])]
            # Without a mount namespace, nobody cannot get at a dir under a private one.
            drop_root = all(child.nobody_reaches(path) for path in needed)
        if self._bwrap is None and (not self._allow_unsandboxed or not drop_root):
            sink("err", child.unsandboxed_warning(drop_root or os.geteuid() != 0))
        env = {
            "PATH": os.pathsep.join([*command.path_dirs, "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": WORK if self._bwrap else str(request.work_dir),
            "TMPDIR": "/tmp" if self._bwrap else str(request.tmp_dir),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",  # so output streams live instead of at exit
            **request.env,
            "RGRID_EXECUTION_ID": request.execution_id,
            marker.partition("=")[0]: marker.partition("=")[2],
        }
        # RLIMIT_NPROC counts all of nobody's processes on the node: allow the run its own
        # PIDS_LIMIT on top of what nobody already runs (another run, a zombie not yet reaped).
        nproc = PIDS_LIMIT + (
            await asyncio.to_thread(child.processes_of, NOBODY) if cgroup is None else 0
        )
        status_r, status_w = os.pipe()
        if self._bwrap is not None:
            argv = sandbox_argv(
                self._bwrap,
                work_dir=request.work_dir,
                tmp_dir=request.tmp_dir,
                read_only=command.read_only,
                hide=[*self._hide, request.work_dir.parent.parent],
                network=request.network,
                env=env,
                status_fd=status_w,
                command=command.argv,
            )
        else:
            argv = command.argv
        argv = self._bounders.wrap(argv, request, cgroup, drop_root, nproc, self.sandboxed)
        started = time.monotonic()
        try:
            proc, exited = await child.start(
                argv,
                cwd=request.work_dir,
                env=env,
                pass_fds=(status_w,),
            )
        except OSError as exc:
            os.close(status_r)
            if cgroup is not None:
                await cgroup.kill_all()
            raise EnvironmentBroken(f"the run could not start: {exc}", "see the node log") from exc
        finally:
            os.close(status_w)
        assert proc.stdout and proc.stderr
        pumps = [
            asyncio.create_task(child.pump(proc.stdout, "out", sink)),
            asyncio.create_task(child.pump(proc.stderr, "err", sink)),
        ]
        exceeded = asyncio.Event()
        watcher = asyncio.create_task(
            bounds.watch_memory(cgroup, proc.pid, marker.encode(), memory, exceeded)
        )
        timed_out = False
        try:
            try:
                async with asyncio.timeout(request.timeout_s):
                    await exited.wait()
                    exit_code: int | None = proc.returncode
            except TimeoutError:
                timed_out, exit_code = True, None
            # Read before the cgroup goes with the kill below.
            if cgroup is not None and cgroup.oom_killed():
                exceeded.set()
            # The run ends with its script: whatever it left behind is killed, so a child
            # holding stdout open cannot keep the run alive.
            await child.kill_run(proc, exited, cgroup, marker, self.sandboxed)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_S):
                    await asyncio.gather(*pumps)
        finally:
            # Also on cancellation: nothing the script started may outlive the run.
            await asyncio.shield(child.kill_run(proc, exited, cgroup, marker, self.sandboxed))
            for task in [*pumps, watcher]:
                task.cancel()
            status = child.read_status(status_r)
        if self._bwrap is not None and "child-pid" not in status and not timed_out:
            raise EnvironmentBroken(
                "the bubblewrap sandbox did not start", "see the run's log and the node's log"
            )
        out_of_memory = exceeded.is_set()
        if out_of_memory:
            sink(
                "err",
                f"rgrid: out of memory: the run's processes together reached its "
                f"{request.resources.memory_mb} MiB limit (--memory)\n".encode(),
            )
        log.debug("process_run", seconds=round(time.monotonic() - started, 3), exit=exit_code)
        return RunOutcome(
            exit_code=exit_code,
            timed_out=timed_out,
            out_of_memory=out_of_memory,
            runtime=self.name,
        )
