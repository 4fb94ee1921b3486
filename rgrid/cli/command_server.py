"""The command server: a process with the whole CLI already imported, that forks one
child per `rgrid` command.

Importing the CLI (typer, rich, pydantic, SQLAlchemy, temporalio, aiodocker) takes about
half a second, longer than a cache hit or a container start. The embedded stack runs
this server beside itself; the thin client (rgrid.cli.thin) hands it the command line,
environment, working directory and its own stdin/stdout/stderr (SCM_RIGHTS), and the
forked child runs the command exactly as an in-process CLI would: same streams, same
environment, same exit code.

Safe to fork because this process starts no threads and opens no connections: the
child creates Temporal's runtime, database pools and event loops of its own. A client
whose code differs from the server's (an upgrade or an edit) is told so and runs the
command in-process; the server then exits, and the stack starts a fresh one.

    python -m rgrid.cli.command_server SOCKET
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rgrid.cli import output
from rgrid.cli.thin import MAX_REQUEST, CommandRequest, code_fingerprint, send_message
from rgrid.paths import stack_file

STACK_WAIT_S = 0.1
# What a command imports lazily (so that it starts fast in-process), found by diffing
# sys.modules across a forked `rgrid run`: each costs every forked command its import.
LAZY_IMPORTS = (
    "aiosqlite",
    "concurrent.futures.thread",
    "rgrid.cache.service",
    "rgrid.client.money",
    "rich._emoji_codes",
    "rich.status",
)


def serve(path: Path) -> None:
    """Accept commands until the code changes under us or we are told to stop."""
    fingerprint = code_fingerprint()
    command = loaded_cli()
    warm()
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket is the user's alone: it runs commands as them
    try:
        listener.bind(str(path))
    finally:
        os.umask(old_umask)
    listener.listen(64)
    # Children are reaped by the kernel; each reports its own exit code to its client.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        conn, _ = listener.accept()
        if peer_uid(conn) != os.getuid():  # the socket's mode keeps others out; root too
            conn.close()
            continue
        try:
            message, fds, _flags, _addr = socket.recv_fds(conn, MAX_REQUEST, 3)
            request: CommandRequest = json.loads(message)
            if not isinstance(request, dict):
                raise ValueError("not a command request")
        except (OSError, ValueError):
            conn.close()
            continue
        if request.get("fingerprint") != fingerprint:
            send_message(conn, {"stale": True})
            conn.close()
            for fd in fds:
                os.close(fd)
            listener.close()
            path.unlink(missing_ok=True)
            return
        if os.fork() == 0:
            listener.close()
            try:
                _child(conn, fds, request, command)  # exits with the command's code
            finally:
                os._exit(125)  # a child never returns into the server's loop
        conn.close()
        for fd in fds:
            os.close(fd)


def loaded_cli() -> Callable[..., object]:
    """The CLI's root command, with every command's module imported."""
    # Everything a command may need, imported once here rather than in every command (some
    # commands import these lazily, so that they start fast when run in-process).
    import aiodocker  # noqa: F401
    import sqlmodel  # noqa: F401
    import temporalio.client  # noqa: F401

    from rgrid.cli import app

    command = app.click_command()
    assert isinstance(command, app.LazyGroup)
    command.load_all()  # once, here: each forked command finds its module imported
    return command


def warm() -> None:
    """Do once here what each forked command would otherwise redo: the lazy imports, and
    SQLAlchemy's mapper set-up (the first query of every command paid ~6 ms for it)."""
    from sqlalchemy.orm import configure_mappers

    for module in LAZY_IMPORTS:
        importlib.import_module(module)
    configure_mappers()
    # Nothing made so far is ever freed: keep it out of the children's collections (and
    # their pages shared with this process, as a collection writes to every object).
    gc.freeze()


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a unix socket, from the kernel."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def take_on_rights(request: CommandRequest) -> bool:
    """Give this child the caller's groups and umask; False if the groups cannot be had
    (the caller joined a group after the server started, and only root may add it)."""
    os.umask(request["umask"])
    if request["gid"] == os.getgid() and request["groups"] == sorted(os.getgroups()):
        return True
    try:
        os.setgroups(request["groups"])
        os.setgid(request["gid"])
    except PermissionError:
        return False
    return True


def _child(
    conn: socket.socket,
    fds: list[int],
    request: CommandRequest,
    command: Callable[..., object],
) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # subprocesses must be waitable again
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setsid()  # signals to the server's group must not reach commands in flight
    for target, fd in zip(request["streams"], fds, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    if not take_on_rights(request):
        with contextlib.suppress(OSError):
            send_message(conn, {"in_process": True})
        os._exit(0)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = request["argv"]
    sys.stdout.reconfigure(line_buffering=os.isatty(1))  # type: ignore[union-attr]
    output.reset_consoles()
    send_message(conn, {"pid": os.getpid()})
    # A client that goes away (closed terminal, killed) takes its command with it.
    threading.Thread(target=_hang_up_with, args=(conn,), daemon=True).start()
    from rgrid.cli import app  # imported by serve() already

    code = app.run_command(command)
    sys.stdout.flush()
    sys.stderr.flush()
    with contextlib.suppress(OSError):
        send_message(conn, {"exit": code})
    os._exit(code)


def _hang_up_with(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while conn.recv(64):
            pass
    os.kill(os.getpid(), signal.SIGHUP)


def main() -> None:
    socket_path = Path(sys.argv[1])
    # Importing the whole CLI takes seconds of CPU that the stack's other parts need while
    # they start (a first `rgrid run` waits for them): begin once the stack is ready.
    home = socket_path.parent.parent
    while not _stack_ready(stack_file(home)):
        time.sleep(STACK_WAIT_S)
    serve(socket_path)


def _stack_ready(path: Path) -> bool:
    try:
        return bool(json.loads(path.read_text()).get("ready", True))
    except (OSError, ValueError, AttributeError):
        return False


if __name__ == "__main__":
    main()
