"""Shared helpers: free ports, per-session real services (a throwaway Postgres cluster and a
local S3 API server), and, in CI, the rule that only allow-listed tests may skip."""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.postgres import Cluster
    from tests.run_counter import RunCounter


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster for the session; skipped where none can start."""
    from tests.postgres import missing_reason, throwaway_cluster

    reason = missing_reason()
    if reason is not None:
        pytest.skip(reason)
    with throwaway_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local S3 API server for the session; skipped where moto[server] is missing."""
    from tests.s3server import moto_server, running_moto

    binary = moto_server()
    if binary is None:
        pytest.skip("moto_server not installed (pip install 'moto[server]')")
    with running_moto(binary, tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint


def aws_test_env(endpoint: str, root: Path) -> dict[str, str]:
    """AWS settings of the local S3 server and nothing from the host (env, files, metadata)."""
    return {
        "AWS_CONFIG_FILE": str(root / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, s3_endpoint: str) -> None:
    """This process talks to the local S3 server only."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in aws_test_env(s3_endpoint, tmp_path).items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def run_counter() -> Iterator[RunCounter]:
    """A loopback endpoint the test's scripts report their runs to."""
    from tests.run_counter import RunCounter

    counter = RunCounter()
    yield counter
    counter.close()


ALLOWED_SKIPS = Path(__file__).with_name("allowed_skips.toml")
_skipped: list[tuple[str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append((report.nodeid, reason))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skip means a part is missing: fail unless the allow-list names the test."""
    if os.environ.get("CI") != "true" or not _skipped:
        return
    allowed = [entry["test"] for entry in tomllib.loads(ALLOWED_SKIPS.read_text())["skip"]]
    unexpected = [(n, r) for n, r in _skipped if not any(n.startswith(a) for a in allowed)]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
        for nodeid, reason in _skipped:
            verdict = "NOT ALLOWED" if (nodeid, reason) in unexpected else "allowed"
            reporter.write_line(
                f"skip {verdict} in CI: {nodeid}: {reason}", red=verdict != "allowed"
            )
    if unexpected:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
