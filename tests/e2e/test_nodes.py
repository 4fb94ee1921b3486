"""The real CLI on an embedded stack with RGRID_PROVIDER=hetzner, against the stand-in
started through its documented entry point (`rgrid dev hetzner-standin`): a run makes a
node through the pool, hcloud and cloud-init; `rgrid nodes` shows and destroys it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import free_port
from tests.e2e.conftest import Cli, isolated_env

pytestmark = pytest.mark.e2e

TOKEN = "e2e-token"


@pytest.fixture(scope="module")
def cloud_cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    root = tmp_path_factory.mktemp("e2e-hetzner")
    port = free_port()
    env = isolated_env(root)
    env.update(
        HCLOUD_TOKEN=TOKEN,
        RGRID_PROVIDER="hetzner",
        RGRID_HCLOUD_ENDPOINT=f"http://127.0.0.1:{port}/v1",
        RGRID_NODE_CLASS="e2e",
        RGRID_NODE_SLOTS="1",
        RGRID_POOL_TICK_S="1",
        RGRID_NODE_BILLING_PERIOD_S="600",
    )
    standin = subprocess.Popen(
        [sys.executable, "-m", "rgrid", "dev", "hetzner-standin", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert standin.stdout is not None
    assert "Hetzner API stand-in on" in standin.stdout.readline()
    runner = Cli(env=env, home=root / "rgrid")
    try:
        started = runner("dev", "start", timeout=120)
        assert started.code == 0, started.stderr
        yield runner
        runner("dev", "stop", timeout=60)
    finally:
        standin.send_signal(signal.SIGTERM)
        standin.wait(timeout=30)


def nodes(cli: Cli, *args: str) -> list[dict[str, Any]]:
    result = cli("nodes", "--json", *args)
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_a_run_gets_a_hetzner_node_that_rgrid_nodes_shows_and_destroys(
    cloud_cli: Cli, tmp_path: Path
) -> None:
    (tmp_path / "hello.py").write_text("print('hello from a node')\n")
    ran = cloud_cli("run", "hello.py", cwd=tmp_path)
    assert ran.code == 0, ran.stderr
    assert ran.stdout == "hello from a node\n"
    # The pool notices within a tick or two that the agent polls (it ran the script already).
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        (view,) = nodes(cloud_cli)
        if view["node"]["state"] == "ready" and view["slots_used"] == 0:
            break
        time.sleep(0.5)
    node = view["node"]
    assert (node["provider"], node["server_type"], node["location"]) == ("hetzner", "cx22", "nbg1")
    assert node["state"] == "ready" and node["hourly_price_microns"] == 6000
    assert view["billed_hours"] == 1 and view["slots_used"] == 0
    listing = cloud_cli("nodes")
    assert node["node_id"] in listing.stdout and "cx22" in listing.stdout
    destroyed = cloud_cli("nodes", "destroy", node["node_id"])
    assert destroyed.code == 0, destroyed.stderr
    deadline = time.monotonic() + 30
    while nodes(cloud_cli) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert nodes(cloud_cli) == []
    (gone,) = nodes(cloud_cli, "--all")
    assert gone["node"]["state"] == "deleted" and gone["node"]["deleted_at"]


def test_an_unknown_node_is_one_clear_line(cloud_cli: Cli) -> None:
    result = cloud_cli("nodes", "drain", "no-such-node")
    assert result.code == 125
    assert result.stderr.strip().splitlines() == [
        "error: the node pool has no node 'no-such-node': see `rgrid nodes`"
    ]


def test_hetzner_without_a_token_says_so_in_one_line(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    env.update(RGRID_PROVIDER="hetzner")
    env.pop("HCLOUD_TOKEN", None)
    result = Cli(env=env, home=tmp_path / "rgrid")("dev", "start", timeout=120)
    assert result.code == 125
    assert "RGRID_PROVIDER=hetzner needs an API token: set HCLOUD_TOKEN" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_stopping_the_stack_deletes_its_servers(cloud_cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text("print('hi')\n")
    assert cloud_cli("run", "hello.py", cwd=tmp_path).code == 0
    assert len(nodes(cloud_cli)) == 1
    assert cloud_cli("dev", "stop", timeout=90).code == 0
    # Nothing would drive the servers now: none may be left billing.
    endpoint = cloud_cli.env["RGRID_HCLOUD_ENDPOINT"]
    listed = requests.get(
        f"{endpoint}/servers", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert listed.json()["servers"] == []
    assert nodes(cloud_cli) == []
    assert all(view["node"]["deleted_at"] for view in nodes(cloud_cli, "--all"))
    assert cloud_cli("dev", "start", timeout=120).code == 0  # for the fixture's stop
