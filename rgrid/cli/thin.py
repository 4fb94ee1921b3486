"""The `rgrid` entry point: hand the command to the embedded stack's command server when
one runs, else run the CLI in this process.

Standard library only, so that starting it costs milliseconds: the server (see
rgrid.cli.command_server) has the heavy CLI imported already and forks a child that runs
the command on this process's own stdin, stdout and stderr. Signals this process gets
(Ctrl-C, a terminal hang-up, kill) are passed on to that child, and its exit code is ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TypedDict

from rgrid.client import stack_launch
from rgrid.paths import (
    command_server_socket,
    config_file_path,
    current_umask,
    default_home,
    stack_file,
)

MAX_REQUEST = 4 * 1024 * 1024  # argv and environment; far above any real command line
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
EXIT_RGRID_ERROR = 125  # as rgrid.cli.output; not imported, to keep this module light
ANSWER_TIMEOUT_S = 10.0


class CommandRequest(TypedDict):
    """What the client sends with its three stream descriptors."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    streams: list[int]  # which of 0, 1, 2 the descriptors stand for, in order
    fingerprint: str
    umask: int
    gid: int
    groups: list[int]


def code_fingerprint() -> str:
    """Which interpreter and which rgrid code this is: a server may only run commands for
    a client with the same fingerprint, so an upgrade or an edit is never run stale."""
    package = Path(__file__).resolve().parent.parent
    stamps = sorted((str(p), p.stat().st_mtime_ns) for p in package.rglob("*.py"))
    return json.dumps([sys.executable, sys.version, stamps])


def send_message(conn: socket.socket, message: dict[str, object]) -> None:
    """One JSON object per line."""
    conn.sendall(json.dumps(message).encode() + b"\n")


def nothing_to_stop() -> bool:
    """`rgrid dev stop` with no stack to stop: answered here, before the CLI's imports
    (seconds on a loaded machine). Only where the state dir is surely the default one."""
    if sys.argv[1:] != ["dev", "stop"] or "RGRID_PROFILE" in os.environ:
        return False
    config = config_file_path()
    if config.exists() and b"home" in config.read_bytes():  # a profile may move the home
        return False
    return not stack_file(default_home()).exists()


def main() -> None:
    """Run the command through the command server if possible, else in-process."""
    if nothing_to_stop():
        sys.stdout.write("not running\n")
        return
    # A newcomer's first run: the stack starts while this process imports the CLI.
    stack_launch.launch_early(sys.argv[1:], default_home())
    # `dev stop` ends the command server itself: it runs here, not inside what it stops.
    stops_the_server = sys.argv[1:3] == ["dev", "stop"]
    if os.environ.get("RGRID_NO_COMMAND_SERVER") != "1" and not stops_the_server:
        code = through_server(command_server_socket(default_home()))
        if code is not None:
            os._exit(code)
    from rgrid.cli.app import main as in_process

    in_process()


def through_server(path: Path, answer_timeout_s: float = ANSWER_TIMEOUT_S) -> int | None:
    """The command's exit code, or None when no (current) server took it."""
    if not path.exists():
        return None
    streams = [fd for fd in (0, 1, 2) if _is_open(fd)]
    request: CommandRequest = {
        "argv": ["rgrid", *sys.argv[1:]],
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "streams": streams,
        "fingerprint": code_fingerprint(),
        "umask": current_umask(),
        "gid": os.getgid(),
        "groups": sorted(os.getgroups()),
    }
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The server answers at once, before the command runs: one that does not is stuck.
    conn.settimeout(answer_timeout_s)
    try:
        conn.connect(str(path))
        socket.send_fds(conn, [json.dumps(request).encode()], streams)
        replies = conn.makefile("rb")
        first = json.loads(replies.readline() or b"{}")
    except (OSError, ValueError):
        conn.close()
        return None  # no server, a dead or stuck one, or one that went away: run it here
    if "pid" not in first:
        conn.close()
        # Stale (the server runs other code than ours), or it cannot take on our groups.
        return None
    conn.settimeout(None)
    return _follow(conn, replies, int(first["pid"]))


def _follow(conn: socket.socket, replies: object, pid: int) -> int:
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    while True:
        try:
            line = replies.readline()  # type: ignore[attr-defined]
        except InterruptedError:
            continue
        except OSError:
            line = b""
        if not line:
            # The child ended without reporting: killed by a signal we passed on, or lost.
            if received:
                return 128 + received[-1]
            sys.stderr.write(
                "error: the rgrid command server dropped the command: "
                "run it again (RGRID_NO_COMMAND_SERVER=1 runs it in this process)\n"
            )
            return EXIT_RGRID_ERROR
        message = json.loads(line)
        if "exit" in message:
            conn.close()
            return int(message["exit"])


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


if __name__ == "__main__":
    main()
