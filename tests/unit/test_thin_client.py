"""The thin `rgrid` client falls back to running a command in-process whenever no
command server answers as it should, so a broken server never hangs or fails a command."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from rgrid.cli.thin import through_server


def test_no_socket_means_run_in_process(tmp_path: Path) -> None:
    assert through_server(tmp_path / "absent.sock") is None


def test_a_socket_nobody_listens_on_means_run_in_process(tmp_path: Path) -> None:
    path = tmp_path / "dead.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, as after a crashed server
    assert through_server(path) is None


def test_a_server_that_never_answers_is_given_up_on(tmp_path: Path) -> None:
    path = tmp_path / "stuck.sock"
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stuck.bind(str(path))
    stuck.listen(1)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(stuck.accept()[0]), daemon=True).start()
    assert through_server(path, answer_timeout_s=0.5) is None  # not a hang
    stuck.close()


def test_a_server_of_other_code_is_not_used(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.listen(1)

    def answer() -> None:
        conn, _ = stale.accept()
        socket.recv_fds(conn, 1 << 20, 3)
        conn.sendall(b'{"stale": true}\n')
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    assert through_server(path) is None
    stale.close()
