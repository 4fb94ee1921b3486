"""The embedded stack as a supervisor of its processes, driven through the CLI: a machine
with no Docker daemon, agents that keep exiting, a supervisor killed -9, private files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rgrid.infra import processes
from tests.e2e.conftest import Cli, isolated_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]


def status_json(cli: Cli) -> dict[str, object]:
    result = cli("dev", "status", "--json")
    return json.loads(result.stdout)


def children(cli: Cli) -> dict[str, dict]:  # type: ignore[type-arg]
    return {c["name"]: c for c in status_json(cli)["processes"]}  # type: ignore[union-attr]


def until(condition, timeout_s: float = 300) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.2)


def private_mount_of_run_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs none /run"], capture_output=True
    )
    return probe.returncode == 0


@pytest.mark.skipif(not private_mount_of_run_works(), reason="needs unshare -m (root)")
def test_readme_first_command_without_a_docker_socket_runs_on_the_process_runtime(
    tmp_path: Path,
) -> None:
    env = isolated_env(tmp_path)
    # A fresh HOME as the README has it: rgrid's defaults (data dir, runtime "auto").
    for name in ("RGRID_HOME", "RGRID_RUNTIME", "RGRID_PYTHON_IMAGE"):
        env.pop(name)
    home = Path(env["HOME"]) / ".local" / "share" / "rgrid"
    cli = Cli(env=env, home=home)
    work = tmp_path / "work"
    shutil.copytree(REPO / "examples", work / "examples")
    # /run is empty in this mount namespace: no /run/docker.sock, as on a fresh machine.
    command = "mount -t tmpfs none /run && exec " + " ".join(
        [sys.executable, "-m", "rgrid", "run", "examples/wordcount.py", "examples/data/doc.txt"]
    )
    try:
        run = subprocess.run(
            ["unshare", "-m", "sh", "-c", command],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert run.returncode == 0, run.stderr
        assert "(process)" in run.stderr
        assert (work / "outputs" / "counts.csv").is_file()
        agent = children(cli)["agent-local-1"]
        assert agent["agent"]["runtime"] == "process"
        # Why, in words: not the bare AssertionError aiodocker raises for a missing socket.
        assert "no Docker daemon (no socket at /var/run/docker.sock" in agent["agent"]["reason"]
        # rgrid's data dir is the user's alone, and so are its databases and stored files.
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        for db in (home / "ledger.db", home / "dev" / "temporal.db"):
            assert stat.S_IMODE(db.stat().st_mode) == 0o600, db
        stored = [p for p in (home / "storage").rglob("*") if p.is_file()]
        assert stored and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in stored)
    finally:
        cli("dev", "stop", timeout=120)


def test_a_run_fails_at_once_with_the_reason_when_every_agent_keeps_exiting(
    tmp_path: Path,
) -> None:
    env = isolated_env(tmp_path)
    env["RGRID_DEV_RESTART_BUDGET"] = "1"  # one restart, then the supervisor gives up
    cli = Cli(env=env, home=tmp_path / "rgrid")
    cli.home.mkdir()
    (cli.home / "nodes").write_text("not a directory")  # the agents cannot make their dirs
    work = tmp_path / "work"
    work.mkdir()
    (work / "ok.py").write_text("print('ok')\n")
    try:
        assert cli("dev", "start", timeout=300).code == 0
        until(lambda: children(cli)["agent-local-1"]["state"] == "gave-up")
        began = time.monotonic()
        result = cli("run", "ok.py", cwd=work, timeout=300)
        waited = time.monotonic() - began
        print(f"no live node: the run failed after {waited:.1f} s")
        assert result.code == 125, result.stderr
        assert "keeps exiting" in result.stderr and "agent-local-1.log" in result.stderr
        assert "NotADirectoryError" in result.stderr
        shown = cli("dev", "status")
        assert "gave-up" in shown.stdout and "agent-local-1 last said" in shown.stdout
    finally:
        cli("dev", "stop", timeout=120)


def test_a_supervisor_killed_9_leaves_nothing_and_the_next_start_works(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    env["RGRID_NO_COMMAND_SERVER"] = "1"
    cli = Cli(env=env, home=tmp_path / "rgrid")
    work = tmp_path / "work"
    work.mkdir()
    (work / "ok.py").write_text("print('ok')\n")
    try:
        assert cli("dev", "start", timeout=300).code == 0
        before = status_json(cli)
        shown = cli("dev", "status")
        assert shown.code == 0
        for name in ("temporal", "control", "agent-local-1", "command-server"):
            assert name in shown.stdout
        supervisor = before["stack"]["pid"]  # type: ignore[index]
        pids = [c["process"]["pid"] for c in before["processes"]]  # type: ignore[union-attr]
        os.kill(supervisor, signal.SIGKILL)
        for pid in pids:
            assert processes.wait_gone(lambda p=pid: processes.start_ticks(p) is not None, 30)
        assert cli("dev", "start", timeout=300).code == 0
        result = cli("run", "ok.py", cwd=work, timeout=300)
        assert result.code == 0, result.stderr
        assert result.stdout == "ok\n"
    finally:
        cli("dev", "stop", timeout=120)


def test_a_followed_run_ends_at_once_when_the_stack_is_stopped(tmp_path: Path) -> None:
    # Nothing will answer again until the user starts it: no 120 s of "retrying…".
    env = isolated_env(tmp_path)
    env["RGRID_UNREACHABLE_RETRY_S"] = "3600"  # retried to the end, it would outlast the test
    cli = Cli(env=env, home=tmp_path / "rgrid")
    work = tmp_path / "work"
    work.mkdir()
    (work / "slow.py").write_text(
        "import time\nprint('started', flush=True)\ntime.sleep(300)\n# rgrid: no-cache\n"
    )
    try:
        run = cli.popen("run", "slow.py", cwd=work)
        assert run.stdout is not None
        for line in run.stdout:
            if line.strip() == "started":
                break
        assert cli("dev", "stop", timeout=120).code == 0
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 75, stderr
        said = " ".join(stderr.split())
        assert "error: the embedded stack stopped: `rgrid watch ID` picks up" in said, said
    finally:
        cli("dev", "stop", timeout=120)
