"""Mistakes a user can make end in one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from rgrid.client.blips import NOTICE
from tests.e2e.conftest import Cli, isolated_env

pytestmark = pytest.mark.e2e


SHORT_RIDE_OUT = {"RGRID_UNREACHABLE_RETRY_S": "2"}


def unreachable_line(stderr: str) -> str:
    """After the one notice that rgrid retries, the one line that it gave up."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert len(lines) == 2 and lines[0] == NOTICE, stderr
    assert "control plane unreachable for 2 s" in lines[1], stderr
    return lines[1]


def one_clear_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "missing.py"], "script not found: missing.py"),
        (["run", "adir"], "script is a directory: adir"),
        (["run", "ok.py", "data/nope.csv"], "input file not found: data/nope.csv"),
        (["run", "ok.py", "-i", "gone.txt"], "input file not found: gone.txt"),
        (["run", "ok.py", "-e", "NOEQUALS"], "bad --env value 'NOEQUALS'"),
        (["run", "ok.py", "-e", "1BAD=x"], "bad --env value '1BAD=x'"),
        (["run", "ok.py", "--timeout", "soon"], "bad duration 'soon'"),
        (["run", "ok.py", "--memory", "lots"], "bad memory size 'lots'"),
        (["run", "ok.py", "--runtime", "python:3.11"], "unknown runtime 'python:3.11'"),
        (["run", "ok.py", "--image", "Bad Image;rm -rf"], "bad image name 'Bad Image;rm -rf'"),
        (["status", "exec-doesnotexist"], "no execution 'exec-doesnotexist'"),
        (["logs", "exec-doesnotexist"], "no execution 'exec-doesnotexist'"),
    ],
)
def test_bad_input_gets_one_line(cli: Cli, work: Path, args: list[str], expected: str) -> None:
    (work / "ok.py").write_text("print('ok')\n")
    (work / "adir").mkdir()
    result = cli(*args, cwd=work)
    assert result.code == 125
    assert expected in one_clear_line(result.stderr)


def test_unreadable_input_is_named(cli: Cli, work: Path) -> None:
    (work / "ok.py").write_text("print('ok')\n")
    locked = work / "locked.txt"
    locked.write_text("x")
    locked.chmod(0)
    result = cli("run", "ok.py", "locked.txt", cwd=work)
    if result.code == 0:
        pytest.skip("running as a user who can read any file (root)")
    assert "input file is not readable: locked.txt" in one_clear_line(result.stderr)


def test_unreachable_configured_temporal_is_one_line(tmp_path: Path, work: Path) -> None:
    (work / "ok.py").write_text("print('ok')\n")
    cli = Cli(env=isolated_env(tmp_path), home=tmp_path / "rgrid")
    address = f"127.0.0.1:{_closed_port()}"
    # A control plane that does not answer is ridden out for a bounded time (here 2 s),
    # said once, then ends in one line and exit 75 (docs/faults.md).
    result = cli("run", "ok.py", cwd=work, RGRID_TEMPORAL_ADDRESS=address, **SHORT_RIDE_OUT)
    assert result.code == 75
    line = unreachable_line(result.stderr)
    assert f"Temporal at {address} does not answer" in line


def test_embedded_stack_names_the_taken_port(tmp_path: Path, work: Path) -> None:
    (work / "ok.py").write_text("print('ok')\n")
    cli = Cli(env=isolated_env(tmp_path), home=tmp_path / "rgrid")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(cli.env["RGRID_DEV_PORT"])))
        squatter.listen()
        result = cli("run", "ok.py", cwd=work)
    assert result.code == 125
    line = one_clear_line(result.stderr)
    assert f"port {cli.env['RGRID_DEV_PORT']} is taken" in line and "RGRID_DEV_PORT" in line
    assert not (tmp_path / "rgrid" / "dev" / "stack.json").exists()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
