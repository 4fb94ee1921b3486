"""Shared helpers: free ports, and per-session real services: a throwaway Postgres
cluster and a local S3 API server."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.postgres import Cluster


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
