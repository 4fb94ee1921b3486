"""The embedded stack's command server: `rgrid` commands run in a forked child of a
process that has the CLI imported, on the client's own streams, environment and cwd."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import textwrap
import time
from pathlib import Path

import pytest

from rgrid.paths import command_server_socket
from tests.e2e.conftest import Cli

pytestmark = pytest.mark.e2e


def server_processes(home: Path) -> list[int]:
    """The command server of this test's stack and its forked children, by the socket on
    their command line: another stack on the machine (another run of the suite) has its own."""
    mine = ["rgrid.cli.command_server", str(command_server_socket(home))]
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if (
                proc.name.isdigit()
                and (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")[-3:-1]
                == mine
            ):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def wait_for(condition: object, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_commands_run_in_the_server_with_the_clients_env_cwd_and_exit_code(
    cli: Cli, work: Path
) -> None:
    # It imports the CLI once the rest of the stack is ready: "starting" until then.
    wait_for(lambda: re.search(r"^command-server +running", cli("dev", "status").stdout, re.M))
    (work / "sub").mkdir()
    (work / "sub" / "env.py").write_text(
        "import os, sys\nprint(os.environ['GREETING'], sys.argv[1])\nsys.exit(4)\n"
    )
    result = cli("run", "-e", "GREETING=hallo", "env.py", "welt", cwd=work / "sub")
    assert result.code == 4
    assert result.stdout == "hallo welt\n"  # stdout carries exactly the script's output
    assert "script exited with code 4" in result.stderr
    missing = cli("run", "absent.py", cwd=work)
    assert missing.code == 125
    assert missing.stderr.strip().splitlines() == [
        "error: script not found: absent.py: check the path"
    ]


def test_a_client_of_other_code_is_turned_away_and_a_fresh_server_takes_over(
    cli: Cli, work: Path
) -> None:
    path = command_server_socket(cli.home)
    (old,) = server_processes(cli.home)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(path))
        request = {
            "argv": ["rgrid", "version"],
            "env": {},
            "cwd": "/",
            "streams": [],
            "fingerprint": "other code",
        }
        conn.sendall(json.dumps(request).encode())
        assert json.loads(conn.makefile().readline()) == {"stale": True}
    wait_for(lambda: server_processes(cli.home) not in ([], [old]))
    wait_for(path.exists)
    assert cli("version").stdout.startswith("rgrid ")


def test_killing_the_client_ends_the_command_it_was_running(cli: Cli, work: Path) -> None:
    (work / "long.py").write_text(
        textwrap.dedent(
            """
            import time
            print("up", flush=True)
            time.sleep(30)
            # rgrid: no-cache
            """
        )
    )
    started = cli("run", "--detach", "long.py", cwd=work)
    execution_id = started.stdout.strip()
    (server,) = server_processes(cli.home)
    follower = cli.popen("logs", "-f", execution_id)
    assert follower.stdout is not None
    assert follower.stdout.readline() == "up\n"
    assert len(server_processes(cli.home)) == 2  # the server and the child running `logs -f`
    os.kill(follower.pid, signal.SIGKILL)
    follower.wait()
    wait_for(lambda: server_processes(cli.home) == [server])
    assert cli("cancel", execution_id).code == 0
