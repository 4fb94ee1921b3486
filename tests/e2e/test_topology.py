"""The production topology on one machine, with nothing of `rgrid dev`: a Temporal server
as the cluster, a Postgres cluster, an S3 API server, two control workers run from the
shipped systemd unit, nodes made through the Hetzner API stand-in whose cloud-init starts
the shipped agent unit, and the CLI pointed at them by RGRID_TEMPORAL_ADDRESS,
RGRID_DATABASE_URL and RGRID_STORAGE_URL. A 40-item batch survives one control worker
killed -9 halfway: every output lands, no script runs twice, the singletons stay single.

Set RGRID_TOPOLOGY_FIGURES=path to append the run's figures (a JSON line) for reports.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from rgrid.infra.codec import CodecKey, Keyring
from rgrid.names import LIMIT_WATCH_ID, pool_workflow_id
from tests.chaos import conftest as chaos
from tests.chaos.conftest import SCRIPT, Counter
from tests.conftest import aws_test_env
from tests.e2e.conftest import Cli, isolated_env
from tests.e2e.topology import (
    Cluster,
    Replica,
    control_replica,
    hetzner_api,
    stop,
    temporal_cluster,
    wait_until,
)
from tests.postgres import Cluster as Postgres

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

# The chaos suite's loopback run counter (each script reports its start and its end).
counter = chaos.counter

ITEMS = 40
PARALLEL = 4
NODE_SLOTS = 2
MAX_NODES = 2
NODE_CLASS = "team"
TOKEN = "topology-token"
SHIPPED_AGENT = ["worker", "agent", "--node-id"]
RGRID = [sys.executable, "-m", "rgrid"]


def _admin_setup(cli: Cli) -> dict[str, bool]:
    done = cli("admin", "setup", "--json", timeout=120)
    assert done.code == 0, done.stderr
    return {step["part"]: step["changed"] for step in done.json()}  # type: ignore[attr-defined]


def _agents(servers_root: Path) -> list[list[str]]:
    """The argv of every agent process the stand-in's servers run."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().decode().split("\0")[:-1]
            environ = (proc / "environ").read_bytes().decode()
        except (OSError, UnicodeDecodeError):
            continue
        if "worker" in argv and f"RGRID_HOME={servers_root}" in environ:
            found.append(argv[argv.index("worker") :])
    return found


def test_a_batch_on_the_whole_topology_survives_a_control_worker_killed(
    postgres: Postgres,
    s3_endpoint: str,
    counter: tuple[Counter, str],
    tmp_path: Path,
) -> None:
    count, counter_url = counter
    with temporal_cluster(tmp_path) as cluster, hetzner_api(tmp_path, TOKEN) as endpoint:
        database = asyncio.run(postgres.create_database())
        shared = {
            # What every part of the team's deployment is told (docs/deploy.md).
            "RGRID_TEMPORAL_ADDRESS": cluster.address,
            "RGRID_DATABASE_URL": database,
            "RGRID_STORAGE_URL": f"s3://rgrid-{uuid.uuid4().hex[:10]}/team",
            "RGRID_CODEC_KEY": Keyring([CodecKey.generate()]).export(),
            "RGRID_PROVIDER": "hetzner",
            "RGRID_NODE_CLASS": NODE_CLASS,
            **aws_test_env(s3_endpoint, tmp_path),
        }
        cli_env = {**isolated_env(tmp_path / "user"), **shared, "RGRID_NO_COMMAND_SERVER": "1"}
        cli = Cli(env=cli_env, home=tmp_path / "user" / "rgrid")

        first = _admin_setup(cli)
        assert first["ledger"] and first["bucket"] and first["search attributes"], first

        control = {
            **shared,
            "HCLOUD_TOKEN": TOKEN,
            "RGRID_HCLOUD_ENDPOINT": endpoint,
            "RGRID_NODE_CHOICES": "cx22@nbg1",
            "RGRID_NODE_SLOTS": str(NODE_SLOTS),
            "RGRID_MAX_NODES": str(MAX_NODES),
            "RGRID_POOL_TICK_S": "1",
            "RGRID_RUNTIME": "process",
            "RGRID_HEARTBEAT_TIMEOUT_S": "5",
        }
        replicas = [control_replica(tmp_path / f"control-{n}", control) for n in (1, 2)]
        try:
            _run_the_batch(cluster, cli, replicas, count, counter_url, tmp_path, endpoint)
            # A replica that comes back (systemd restarts it) joins without a second copy.
            replicas.append(control_replica(tmp_path / "control-1b", control))
            wait_until(lambda: replicas[-1].health() == 200, "the restarted replica is up")
            _assert_singletons(cluster)

            second = _admin_setup(cli)
            assert not any(second.values()), second
            assert set(second) == set(first)
        finally:
            for replica in replicas:
                stop(replica.proc)
        for replica in replicas[1:]:
            assert "Traceback" not in replica.log(), replica.log()[-3000:]


def _assert_singletons(cluster: Cluster) -> None:
    assert cluster.running("NodePoolWorkflow") == [pool_workflow_id("hetzner", NODE_CLASS)]
    assert cluster.running("LimitWatchWorkflow") == [LIMIT_WATCH_ID]


def _run_the_batch(
    cluster: Cluster,
    cli: Cli,
    replicas: list[Replica],
    count: Counter,
    counter_url: str,
    root: Path,
    endpoint: str,
) -> None:
    wait_until(lambda: all(r.health() == 200 for r in replicas), "both replicas are healthy")
    _assert_singletons(cluster)

    work = root / "work"
    (work / "data").mkdir(parents=True)
    (work / "item.py").write_text(SCRIPT)
    items = [f"item-{n:02d}.txt" for n in range(ITEMS)]
    for name in items:
        (work / "data" / name).write_text(f"{name} {time.time_ns()}\n")
    started = time.monotonic()
    batch = subprocess.Popen(
        [
            *RGRID,
            "run",
            "item.py",
            "--batch",
            "data/*.txt",
            "--parallel",
            str(PARALLEL),
            "--no-cache",
            "-e",
            f"CHAOS_COUNTER={counter_url}",
        ],
        cwd=work,
        env=cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        count.wait_for(lambda c: sum(c.done.values()) >= ITEMS // 2, timeout_s=300)
        killed_at = time.monotonic() - started
        done_at_kill = sum(count.done.values())
        os.kill(replicas[0].proc.pid, signal.SIGKILL)
        replicas[0].proc.wait()
        count.wait_for(lambda c: sum(c.done.values()) > done_at_kill, timeout_s=300)
        next_done_s = time.monotonic() - started - killed_at
        _, stderr = batch.communicate(timeout=400)
    finally:
        if batch.poll() is None:
            batch.kill()
            batch.wait()
    batch_s = time.monotonic() - started
    (work / "cli.stderr").write_text(stderr)
    assert batch.returncode == 0, stderr[-3000:]

    missing = [i for i in items if not (work / "outputs" / Path(i).stem / "result.txt").is_file()]
    twice = [i for i in items if (count.started[i], count.done[i]) != (1, 1)]
    assert missing == [], missing
    assert twice == [], {i: (count.started[i], count.done[i]) for i in twice}
    assert all(
        (work / "outputs" / Path(i).stem / "result.txt").read_text().startswith(i.upper())
        for i in items
    )
    assert replicas[0].health() is None and replicas[1].health() == 200
    _assert_singletons(cluster)

    # The nodes: servers of the Hetzner API, each running the shipped unit's command.
    listed = requests.get(
        f"{endpoint}/servers",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    ).json()["servers"]
    agents = _agents(root / "servers")
    assert 1 <= len(listed) <= MAX_NODES
    # The node id is the server's name; nothing but what the shipped unit says is run.
    assert sorted(a[3] for a in agents) == sorted(s["name"] for s in listed)
    assert all(a[:3] == SHIPPED_AGENT and a[4:] == ["--slots", str(NODE_SLOTS)] for a in agents)
    for env_file in (root / "servers").glob("server-*/etc/rgrid/agent.env"):
        assert "DATABASE" not in env_file.read_text()

    figures = {
        "items": ITEMS,
        "parallel": PARALLEL,
        "nodes": len(listed),
        "batch_s": round(batch_s, 1),
        "killed_at_s": round(killed_at, 1),
        "done_at_kill": done_at_kill,
        "next_done_after_kill_s": round(next_done_s, 1),
        "started_runs": sum(count.started.values()),
        "finished_runs": sum(count.done.values()),
        "missing_outputs": len(missing),
        "ran_twice": len(twice),
    }
    print(json.dumps(figures))
    if path := os.environ.get("RGRID_TOPOLOGY_FIGURES"):
        with open(path, "a") as fh:
            fh.write(json.dumps(figures) + "\n")
