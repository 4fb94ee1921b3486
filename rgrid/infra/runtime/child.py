"""Starting, bounding and ending the processes of one process-runtime run (the tools its
command is exec'd through to bound it, who may reach what), and the helpers that build
its layers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rgrid.errors import DependencyInstallError, EnvironmentBroken, UserInputError
from rgrid.infra.runtime import bounds
from rgrid.infra.runtime.base import OutputSink, RunRequest
from rgrid.infra.runtime.sandbox import NOBODY

KILL_GRACE_S = 2.0
PIDS_LIMIT = 256  # as the docker runtime's
ALLOW_UNSANDBOXED = "RGRID_ALLOW_UNSANDBOXED"


def venv_home(venv: Path) -> Path | None:
    """The interpreter dir a venv points at (pyvenv.cfg's `home`), None if unreadable."""
    try:
        for line in (venv / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home":
                return Path(value.strip())
    except OSError:
        return None
    return None


def unsandboxed_warning(unprivileged: bool) -> bytes:
    """The one line a run on a node without the sandbox prints."""
    who = "" if unprivileged else ", as root (uid 65534 cannot reach its files)"
    return (
        f"rgrid: warning: this node runs scripts without isolation{who}; "
        f"set {ALLOW_UNSANDBOXED}=1 on the node to accept unsandboxed runs\n"
    ).encode()


def nobody_reaches(path: Path) -> bool:
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


def give_to_nobody(*dirs: Path) -> None:
    # When rgrid is root the script runs as nobody: it must own its work and scratch dirs.
    if os.geteuid() != 0:
        return
    for root in dirs:
        root.mkdir(parents=True, exist_ok=True)
        os.chown(root, NOBODY, NOBODY)
        for directory, subdirs, files in os.walk(root):
            for name in [*subdirs, *files]:
                os.chown(os.path.join(directory, name), NOBODY, NOBODY, follow_symlinks=False)


def processes_of(uid: int) -> int:
    """How many processes run as `uid` now."""
    count = 0
    for entry in os.scandir("/proc"):
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                count += 1
    return count


@dataclass(frozen=True)
class Bounders:
    """The util-linux tools a run's command is exec'd through: nothing of Python runs
    between the agent's fork and the script's exec (a preexec_fn in the threaded agent can
    deadlock the child before exec: a fork of the agent once hung there for good)."""

    sh: str
    prlimit: str
    setpriv: str

    @classmethod
    def find(cls) -> Bounders:
        found = {name: shutil.which(name) for name in ("sh", "prlimit", "setpriv")}
        missing = [name for name, path in found.items() if path is None]
        if missing:
            raise EnvironmentBroken(
                f"this node lacks {', '.join(missing)}, which bound every run",
                "install util-linux on the node",
            )
        return cls(**found)  # type: ignore[arg-type]

    def wrap(
        self,
        argv: list[str],
        request: RunRequest,
        cgroup: bounds.RunCgroup | None,
        drop_root: bool,
        nproc: int,
        sandboxed: bool,
    ) -> list[str]:
        """`argv` behind the steps that bound it, each exec'ing the next in the same pid."""
        memory = request.resources.memory_mb * 1024 * 1024
        cpu_seconds = int(request.timeout_s * max(request.resources.cpus, 1)) + 5
        root = os.geteuid() == 0
        wrapped: list[str] = []
        if cgroup is not None:
            # Into the run's cgroup before anything of the run can fork.
            moves = [f"echo $$ >{shlex.quote(str(d / 'cgroup.procs'))}" for d in cgroup.dirs]
            wrapped += [self.sh, "-c", " && ".join([*moves, 'exec "$@"']), "rgrid-run"]
        limits = ["--core=0:0", f"--cpu={cpu_seconds}:{cpu_seconds + 5}"]
        if cgroup is None:
            # No cgroup: per-process bounds (the monitor counts the whole run's memory);
            # RLIMIT_NPROC counts nobody's processes, so only where root is dropped.
            limits.append(f"--as={memory}:{memory}")
            if root:
                limits.append(f"--nproc={nproc}:{nproc}")
        wrapped += [self.prlimit, *limits, "--"]
        if not sandboxed:
            # bwrap's --die-with-parent does this in a sandbox. setpriv sets the death
            # signal after it drops root, which would otherwise clear it.
            wrapped += [self.setpriv, "--pdeathsig", "KILL"]
            if drop_root:  # only ever asked of a root agent
                ids = str(NOBODY)
                wrapped += ["--reuid", ids, "--regid", ids, "--clear-groups"]
            wrapped.append("--")
        return [*wrapped, *argv]


def read_status(fd: int) -> dict[str, object]:
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


async def remove_dir(version: str) -> None:
    await asyncio.to_thread(shutil.rmtree, version, True)


async def install_npm(building: Path, requirements: list[str], refresh: bool) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise UserInputError(
            "this node has no npm to install the script's package.json dependencies",
            "install npm on the node, or use --runtime docker with a Node image",
        )
    building.mkdir(parents=True)
    await check_call(
        [
            *(npm, "install", "--prefix", str(building), "--no-audit", "--no-fund"),
            *("--omit=dev", "--no-package-lock", "--loglevel=error"),
            *(["--prefer-online"] if refresh else []),
            *requirements,  # validated name@range pairs, never paths or URLs (deps.py)
        ],
        install_error=", ".join(requirements),
    )
    readable_by_all(building)
    (building / ".complete").touch()


async def pump(stream: asyncio.StreamReader, name: str, sink: OutputSink) -> None:
    while chunk := await stream.read(65536):
        sink(name, chunk)  # type: ignore[arg-type]


class ExitProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Says when the process exits, whoever still holds its pipes: asyncio's own wait()
    also waits for stdout and stderr to close, which a left-behind child can delay."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=2**16, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


async def start(argv: list[str], **kwargs: Any) -> tuple[asyncio.subprocess.Process, asyncio.Event]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: ExitProtocol(loop),
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own session and process group
        **kwargs,
    )
    return asyncio.subprocess.Process(transport, protocol, loop), protocol.exited


async def kill_group(proc: asyncio.subprocess.Process, exited: asyncio.Event) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(KILL_GRACE_S):
            await exited.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    await exited.wait()


async def check_call(argv: list[str], install_error: str = "") -> None:
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


async def kill_run(
    proc: asyncio.subprocess.Process,
    exited: asyncio.Event,
    cgroup: bounds.RunCgroup | None,
    marker: str,
    sandboxed: bool,
) -> None:
    """Kill every process of the run: its group, its cgroup, or what carries its marker."""
    if proc.returncode is None:
        await kill_group(proc, exited)
    if cgroup is not None:
        await cgroup.kill_all()
    elif not sandboxed:
        # No cgroup and no pid namespace: find escapees (setsid, double fork) by marker.
        for _ in range(3):
            pids = await asyncio.to_thread(bounds.run_processes, proc.pid, marker.encode())
            if not pids:
                break
            bounds.kill_processes(pids)
            await asyncio.sleep(0.01)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def readable_by_all(root: Path) -> None:
    """Let every user read a layer (and enter its dirs): a sandboxed run reads it as
    nobody, and a worker's private umask (077) would have made it root's alone."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            if not path.is_symlink():
                mode = path.stat().st_mode
                extra = 0o555 if path.is_dir() or mode & 0o100 else 0o444
                path.chmod(mode | extra)
    root.chmod(root.stat().st_mode | 0o555)
