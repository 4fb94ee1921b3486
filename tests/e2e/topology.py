"""The parts of a team's deployment, each started as its own process on this machine the
way docs/deploy.md has them run: a Temporal dev server as the cluster, the Hetzner API
stand-in, and control workers started from the shipped `rgrid-control.service` (its
ExecStart and EnvironmentFile, read as systemd would by tests/standins/systemd.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from temporalio.client import Client

from rgrid.worker.dev import temporal_binary
from tests.conftest import free_port
from tests.standins.systemd import service_command

CHECKOUT = Path(__file__).resolve().parents[2]

# What docs/deploy.md says a cluster needs from its dynamic config (and the poll rates
# that keep a small server quick).
CLUSTER_CONFIG = {
    "frontend.enableUpdateWorkflowExecution": True,
    "matching.useNewMatcher": True,
    "matching.enableFairness": True,
    "history.transferProcessorMaxPollRPS": 1000,
    "history.timerProcessorMaxPollRPS": 1000,
    "history.visibilityProcessorMaxPollRPS": 1000,
}


def wait_until(check, what: str, timeout_s: float = 120, every: float = 0.2):  # type: ignore[no-untyped-def]
    """Poll `check()` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(every)


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """SIGTERM, then SIGKILL if it will not go."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@dataclass
class Cluster:
    """The team's Temporal: a dev server that knows nothing of rgrid until `admin setup`."""

    address: str

    def running(self, workflow_type: str) -> list[str]:
        """Ids of the running workflows of one type."""

        async def ids() -> list[str]:
            client = await Client.connect(self.address)
            query = f"WorkflowType = '{workflow_type}' AND ExecutionStatus = 'Running'"
            return sorted([w.id async for w in client.list_workflows(query)])

        return asyncio.run(ids())

    def answers(self) -> bool:
        try:
            return self.running("NoSuchWorkflow") == []
        except Exception:  # not up yet: any RPC error
            return False


@contextlib.contextmanager
def temporal_cluster(root: Path) -> Iterator[Cluster]:
    """`temporal server start-dev` on a free port, with no search attributes of rgrid's."""
    port = free_port()
    argv = [temporal_binary(), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port)]
    argv += ["--headless", "--log-level", "warn", "--db-filename", str(root / "temporal.db")]
    for key, value in CLUSTER_CONFIG.items():
        argv += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]
    with (root / "temporal.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log)
    try:
        wait_until(lambda: _listens(port) or proc.poll() is not None, "Temporal listens")
        assert proc.poll() is None, (root / "temporal.log").read_text()[-2000:]
        cluster = Cluster(f"127.0.0.1:{port}")
        wait_until(cluster.answers, "Temporal answers queries")
        yield cluster
    finally:
        stop(proc)


@contextlib.contextmanager
def hetzner_api(root: Path, token: str) -> Iterator[str]:
    """The Hetzner API stand-in as its own process; its endpoint URL."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT)}
    with (root / "standin.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.standins.hetzner",
                "--port",
                str(port),
                "--root",
                str(root / "servers"),
                "--token",
                token,
            ],
            env=env,
            stdout=log,
            stderr=log,
        )
    try:
        wait_until(lambda: _listens(port) or proc.poll() is not None, "the stand-in listens")
        assert proc.poll() is None, (root / "standin.log").read_text()[-2000:]
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(proc)  # kills every server's agent


def env_file(values: dict[str, str]) -> str:
    """An EnvironmentFile as an operator writes one (rgrid/deploy/rgrid.env.example)."""
    return "".join(f"{key}={value}\n" for key, value in sorted(values.items()))


@dataclass
class Replica:
    """One control host: its root (/etc/rgrid/control.env, /var/lib/...) and process."""

    root: Path
    health_port: int
    proc: subprocess.Popen[bytes]

    def health(self) -> int | None:
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None

    def log(self) -> str:
        return (self.root / "rgrid-control.log").read_text(errors="replace")


def control_replica(root: Path, settings: dict[str, str]) -> Replica:
    """`rgrid-control.service` as a control host runs it: the shipped unit's ExecStart
    with its EnvironmentFile, /etc/rgrid/control.env (the host's paths under `root`)."""
    health_port = free_port()
    config = root / "etc" / "rgrid" / "control.env"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(env_file({**settings, "RGRID_HEALTH_PORT": str(health_port)}))
    config.chmod(0o600)
    unit = resources.files("rgrid").joinpath("deploy", "rgrid-control.service").read_text()

    def place(value: str) -> str:
        rooted = value.startswith("/") and not value.startswith("/dev/")
        return str(root / value.lstrip("/")) if rooted else value

    argv, env = service_command(
        [unit],
        read=lambda path: (root / path.lstrip("/")).read_text(),
        base_env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root)},
        place=place,
    )
    Path(env["RGRID_HOME"]).mkdir(parents=True, exist_ok=True)  # systemd's StateDirectory=
    with (root / "rgrid-control.log").open("ab") as log:
        proc = subprocess.Popen(argv, env=env, cwd=root, stdout=log, stderr=log)
    return Replica(root, health_port, proc)
