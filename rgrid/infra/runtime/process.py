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
import ctypes
import json
import os
import resource
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from uv import find_uv_bin

from rgrid.errors import DependencyInstallError, EnvironmentBroken, UserInputError
from rgrid.infra.deps import layer_key
from rgrid.infra.runtime import bounds
from rgrid.infra.runtime.base import NODE_SUFFIXES, OutputSink, RunOutcome, RunRequest
from rgrid.infra.runtime.layers import LayerStore
from rgrid.infra.runtime.sandbox import NOBODY, WORK, probe_bwrap, sandbox_argv

log = structlog.get_logger()

KILL_GRACE_S = 2.0
DRAIN_S = 1.0  # after every process of the run is dead, how long its output may trail
PIDS_LIMIT = 256  # as the docker runtime's
VENV = "/rgrid/venv"  # where the sandbox shows the venv layer
PR_SET_PDEATHSIG = 1
ALLOW_UNSANDBOXED = "RGRID_ALLOW_UNSANDBOXED"
_LIBC = ctypes.CDLL(None, use_errno=True)


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
        self._layers = LayerStore(remove=_remove_dir)
        # rgrid's own dirs: never visible in a sandbox (masked where under a system dir).
        self._hide = [cache_dir.parent, *(hide or [])]
        self._bwrap, why = probe_bwrap() if sandbox else (None, "the sandbox is turned off")
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
            home = _venv_home(venv)
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
            await _install_npm(path, request.requirements, request.rebuild)
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
            await _check_call(
                [uv, "venv", "--quiet", "--relocatable", "--python", self._python, str(path)]
            )
        except RuntimeError as exc:
            raise EnvironmentBroken(f"could not make a venv: {exc}", "see the node's log") from exc
        if requirements:
            python = str(path / "bin" / "python")
            await _check_call(
                [
                    *(uv, "pip", "install", "--quiet", "--python", python),
                    *(["--refresh"] if refresh else []),
                    *requirements,
                ],
                install_error=", ".join(requirements),
            )
        (path / ".complete").touch()

    async def _spawn(self, request: RunRequest, sink: OutputSink, command: _Command) -> RunOutcome:
        memory = request.resources.memory_mb * 1024 * 1024
        marker = f"RGRID_RUN={request.execution_id}-{os.urandom(6).hex()}"
        cgroup = (
            bounds.make_cgroup(marker.partition("=")[2], memory, PIDS_LIMIT)
            if self._cgroups
            else None
        )
        _give_to_nobody(request.work_dir, request.tmp_dir)
        drop_root = False
        if self._bwrap is not None:
            command = _Command(command.inside().argv, command.inside().path_dirs, command.read_only)
        elif os.geteuid() == 0:
            needed = [request.work_dir, request.tmp_dir, Path(command.argv[0])]
            # Without a mount namespace, nobody cannot get at a dir under a private one.
            drop_root = all(_nobody_reaches(path) for path in needed)
        if self._bwrap is None and (not self._allow_unsandboxed or not drop_root):
            sink("err", _unsandboxed_warning(drop_root or os.geteuid() != 0))
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
            await asyncio.to_thread(_processes_of, NOBODY) if cgroup is None else 0
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
        started = time.monotonic()
        try:
            proc, exited = await _start(
                argv,
                cwd=request.work_dir,
                env=env,
                pass_fds=(status_w,),
                preexec_fn=_child_setup(request, cgroup, drop_root, nproc),
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
            asyncio.create_task(_pump(proc.stdout, "out", sink)),
            asyncio.create_task(_pump(proc.stderr, "err", sink)),
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
            await self._kill_all(proc, exited, cgroup, marker)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_S):
                    await asyncio.gather(*pumps)
        finally:
            # Also on cancellation: nothing the script started may outlive the run.
            await asyncio.shield(self._kill_all(proc, exited, cgroup, marker))
            for task in [*pumps, watcher]:
                task.cancel()
            status = _read_status(status_r)
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

    async def _kill_all(
        self,
        proc: asyncio.subprocess.Process,
        exited: asyncio.Event,
        cgroup: bounds.RunCgroup | None,
        marker: str,
    ) -> None:
        if proc.returncode is None:
            await _kill_group(proc, exited)
        if cgroup is not None:
            await cgroup.kill_all()
        elif self._bwrap is None:
            # No cgroup and no pid namespace: find escapees (setsid, double fork) by marker.
            for _ in range(3):
                pids = await asyncio.to_thread(bounds.run_processes, proc.pid, marker.encode())
                if not pids:
                    break
                bounds.kill_processes(pids)
                await asyncio.sleep(0.01)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def _venv_home(venv: Path) -> Path | None:
    """The interpreter dir a venv points at (pyvenv.cfg's `home`), None if unreadable."""
    try:
        for line in (venv / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home":
                return Path(value.strip())
    except OSError:
        return None
    return None


def _unsandboxed_warning(unprivileged: bool) -> bytes:
    """The one line a run on a node without the sandbox prints."""
    who = "" if unprivileged else ", as root (uid 65534 cannot reach its files)"
    return (
        f"rgrid: warning: this node runs scripts without isolation{who}; "
        f"set {ALLOW_UNSANDBOXED}=1 on the node to accept unsandboxed runs\n"
    ).encode()


def _nobody_reaches(path: Path) -> bool:
    """True if uid 65534 can walk to `path` (and what it links to): every dir on the way
    lets others (or nobody itself) search it."""
    try:
        target = path.resolve(strict=True)
        for directory in [*reversed(target.parents), *([target] if target.is_dir() else [])]:
            info = directory.stat()
            mine = info.st_uid == NOBODY and info.st_mode & 0o100
            if not (info.st_mode & 0o001 or mine):
                return False
    except OSError:
        return False
    return True


def _give_to_nobody(*dirs: Path) -> None:
    # When rgrid is root the script runs as nobody: it must own its work and scratch dirs.
    if os.geteuid() != 0:
        return
    for root in dirs:
        root.mkdir(parents=True, exist_ok=True)
        os.chown(root, NOBODY, NOBODY)
        for directory, subdirs, files in os.walk(root):
            for name in [*subdirs, *files]:
                os.chown(os.path.join(directory, name), NOBODY, NOBODY, follow_symlinks=False)


def _processes_of(uid: int) -> int:
    """How many processes run as `uid` now."""
    count = 0
    for entry in os.scandir("/proc"):
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                count += 1
    return count


def _child_setup(  # type: ignore[no-untyped-def]
    request: RunRequest, cgroup: bounds.RunCgroup | None, drop_root: bool, nproc: int
):
    memory = request.resources.memory_mb * 1024 * 1024
    cpu_seconds = int(request.timeout_s * max(request.resources.cpus, 1)) + 5
    root = os.geteuid() == 0

    def apply() -> None:
        # Runs in the child between fork and exec: only async-signal-safe work here.
        # If the agent dies, the script dies with it instead of running on unowned.
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
        if cgroup is not None:
            cgroup.attach()
        else:
            # No cgroup: per-process bounds (the monitor counts the whole run's memory);
            # RLIMIT_NPROC counts nobody's processes, so only once root is dropped.
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            if root:
                resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        if drop_root and root:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)

    return apply


def _read_status(fd: int) -> dict[str, object]:
    """What bwrap reported on its status fd (child-pid once the sandbox stood)."""
    status: dict[str, object] = {}
    os.set_blocking(fd, False)
    data = b""
    with contextlib.suppress(BlockingIOError, OSError):
        while chunk := os.read(fd, 65536):
            data += chunk
    os.close(fd)
    for line in data.decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            status.update(json.loads(line))
    return status


async def _remove_dir(version: str) -> None:
    await asyncio.to_thread(shutil.rmtree, version, True)


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
    (building / ".complete").touch()


async def _pump(stream: asyncio.StreamReader, name: str, sink: OutputSink) -> None:
    while chunk := await stream.read(65536):
        sink(name, chunk)  # type: ignore[arg-type]


class _ExitProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Says when the process exits, whoever still holds its pipes: asyncio's own wait()
    also waits for stdout and stderr to close, which a left-behind child can delay."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=2**16, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


async def _start(
    argv: list[str], **kwargs: Any
) -> tuple[asyncio.subprocess.Process, asyncio.Event]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _ExitProtocol(loop),
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own session and process group
        **kwargs,
    )
    return asyncio.subprocess.Process(transport, protocol, loop), protocol.exited


async def _kill_group(proc: asyncio.subprocess.Process, exited: asyncio.Event) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(KILL_GRACE_S):
            await exited.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    await exited.wait()


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
