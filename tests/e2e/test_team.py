"""Team mode end to end: the real CLI on a private embedded stack whose ledger is a real
PostgreSQL cluster and whose storage is a local S3 server."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from datetime import time as dt_time
from pathlib import Path

import pytest

from tests.conftest import aws_test_env
from tests.e2e.conftest import Cli, isolated_env
from tests.e2e.test_run import script
from tests.postgres import Cluster

pytestmark = pytest.mark.e2e

DB_PASSWORD = "pw-never-printed"


@pytest.fixture(scope="module")
def team_cli(
    postgres: Cluster, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cli]:
    root = tmp_path_factory.mktemp("team")
    # Trust auth ignores the password; it is there to prove it is never shown or handed on.
    database = f"postgresql+asyncpg://postgres:{DB_PASSWORD}@127.0.0.1:{postgres.port}/postgres"
    env = {
        **isolated_env(root),
        **aws_test_env(s3_endpoint, root),
        "RGRID_STORAGE_URL": f"s3://rgrid-{uuid.uuid4().hex[:10]}/team",
        "RGRID_DATABASE_URL": database,
    }
    cli = Cli(env=env, home=root / "rgrid")
    setup = cli("admin", "setup", "--json")
    assert setup.code == 0, setup.stderr
    assert {step["part"] for step in setup.json()} >= {"ledger", "bucket", "lifecycle"}  # type: ignore[union-attr]
    started = cli("dev", "start", timeout=120)
    assert started.code == 0, started.stderr
    yield cli
    cli("dev", "stop", timeout=60)


def test_a_run_on_s3_and_postgres_round_trips_and_a_rerun_uploads_nothing(
    team_cli: Cli, work: Path
) -> None:
    script(
        work,
        "digest.py",
        """
        import hashlib, sys
        data = open(sys.argv[1], "rb").read()
        open("digest.txt", "w").write(hashlib.sha256(data).hexdigest())
        open("copy.bin", "wb").write(data)
    """,
    )
    payload = os.urandom(12 * 1024 * 1024 + 7)  # multipart on the way up and down
    (work / "input.bin").write_bytes(payload)

    first = team_cli("run", "--json", "digest.py", "input.bin", cwd=work)
    assert first.code == 0, first.stderr
    result = first.json()
    assert isinstance(result, dict)
    assert result["status"] == "succeeded"
    assert result["uploaded_files"] == 2 and result["uploaded_bytes"] > len(payload)
    expected = hashlib.sha256(payload).hexdigest()
    assert (work / "outputs" / "digest.txt").read_text() == expected
    assert (work / "outputs" / "copy.bin").read_bytes() == payload

    again = team_cli("run", "--json", "--no-cache", "digest.py", "input.bin", cwd=work)
    assert again.code == 0, again.stderr
    rerun = again.json()
    assert isinstance(rerun, dict)
    assert (rerun["uploaded_files"], rerun["uploaded_bytes"]) == (0, 0)
    assert rerun["already_stored_files"] == 2

    listed = team_cli("outputs", "--json", result["id"])
    assert listed.code == 0, listed.stderr
    sizes = {o["path"]: o["size"] for o in listed.json()}  # type: ignore[union-attr]
    assert sizes == {"digest.txt": 64, "copy.bin": len(payload)}

    status = team_cli("status", "--json", result["id"])
    assert status.code == 0, status.stderr
    shown = status.json()
    assert isinstance(shown, dict)
    # The bucket's lifecycle rule removes them 30 days (the default retention) after they
    # were stored, at the next midnight UTC, as S3 counts.
    finished = datetime.fromisoformat(shown["finished_at"])
    expires = datetime.fromisoformat(shown["outputs_expire_at"])
    assert expires.utcoffset() == timedelta(0) and expires.time() == dt_time(0)
    assert timedelta(days=30) <= expires - finished < timedelta(days=31)

    rows = team_cli("list", "--json", "-n", "5")
    assert {row["execution_id"] for row in rows.json()} >= {result["id"], rerun["id"]}  # type: ignore[union-attr]


def test_config_hides_the_password_and_nodes_never_get_the_database_url(team_cli: Cli) -> None:
    shown = team_cli("config", "--json")
    assert shown.code == 0, shown.stderr
    settings = shown.json()
    assert isinstance(settings, dict)
    assert settings["database_url"]["source"] == "env RGRID_DATABASE_URL"
    assert ":***@" in settings["database_url"]["value"]
    assert DB_PASSWORD not in shown.stdout + shown.stderr

    agents = _agent_environments(team_cli.home)
    assert agents, "no node agent of this stack is running"
    for env in agents:
        assert env["RGRID_STORAGE_URL"].startswith("s3://")
        assert "RGRID_DATABASE_URL" not in env
        assert not any(DB_PASSWORD in value for value in env.values())


def _agent_environments(home: Path) -> list[dict[str, str]]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if b"rgrid.worker.agent" not in cmdline:
                continue
            raw = (proc / "environ").read_bytes()
        except OSError:
            continue
        env = dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
        if env.get("RGRID_HOME") == str(home):
            found.append(env)
    return found
