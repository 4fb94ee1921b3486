"""The bubblewrap sandbox of the process runtime (the tool Flatpak uses).

Inside it the system is read-only, the work dir (at /work) and a scratch /tmp are the only
writable paths, the dependency layer and the interpreter are bound read-only, and nothing
else of the host is there: not rgrid's home, its storage, the ledger or other runs. It has
its own pid namespace (every process of the run ends when the script does), network
namespace (empty with --no-network), ipc and uts namespaces, and runs as nobody when
rgrid runs as root: bubblewrap mounts as root, then setpriv drops to 65534 with no
capabilities and no-new-privs before the interpreter starts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import structlog

log = structlog.get_logger()

NOBODY = 65534
WORK = "/work"
# System dirs bound read-only when present; merged-/usr symlinks are recreated as links.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/etc", "/opt")


def probe_bwrap() -> tuple[str | None, str]:
    """bwrap's path if it can build a sandbox on this node, else None and why not."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None, "bwrap is not installed"
    argv = [bwrap, "--ro-bind", "/", "/", "--unshare-pid", "--unshare-net", "--", "/bin/true"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"bwrap does not start: {exc}"
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        return None, f"bwrap cannot make namespaces here: {why[-1] if why else done.returncode}"
    return bwrap, ""


def sandbox_argv(
    bwrap: str,
    *,
    work_dir: Path,
    tmp_dir: Path,
    read_only: list[tuple[Path, str]],
    hide: list[Path],
    network: bool,
    env: dict[str, str],
    status_fd: int,
    command: list[str],
) -> list[str]:
    """The bwrap command line running `command` in a fresh sandbox for one run."""
    argv = [bwrap]
    for name in SYSTEM_DIRS:
        path = Path(name)
        if path.is_symlink():
            argv += ["--symlink", os.readlink(path), name]
        elif path.is_dir():
            argv += ["--ro-bind", name, name]
    for path in hide:
        # rgrid's own dirs, where they lie under a system dir bound above: masked.
        if any(path.is_relative_to(name) for name in SYSTEM_DIRS):
            argv += ["--tmpfs", str(path)]
    argv += [
        *("--proc", "/proc", "--dev", "/dev"),
        *("--bind", str(work_dir), WORK, "--bind", str(tmp_dir), "/tmp"),
    ]
    made: set[str] = set()
    for source, target in read_only:  # after /tmp, so a layer under /tmp stays visible
        # bwrap makes missing parents 0700 as root: make them traversable for nobody.
        for parent in reversed(Path(target).parents):
            name = str(parent)
            if name != "/" and name not in made and name not in SYSTEM_DIRS:
                made.add(name)
                argv += ["--perms", "0755", "--dir", name]
        argv += ["--ro-bind", str(source), target]
    argv += [
        *("--chdir", WORK),
        *("--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"),
        *([] if network else ["--unshare-net"]),
        *("--die-with-parent", "--new-session"),
        *("--json-status-fd", str(status_fd)),
        "--clearenv",
    ]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    if os.geteuid() == 0:
        # Root mounts; the script runs as nobody with nothing left to escalate with.
        ids = str(NOBODY)
        argv += [
            *("--", "setpriv", "--reuid", ids, "--regid", ids, "--clear-groups"),
            *("--no-new-privs", "--bounding-set", "-all", "--inh-caps", "-all"),
        ]
    return [*argv, "--", *command]
