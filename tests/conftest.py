"""Shared helpers: free ports, and a throwaway Postgres cluster per test session."""

from __future__ import annotations

import socket
from collections.abc import Iterator
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
