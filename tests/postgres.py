"""A throwaway PostgreSQL cluster from the machine's server binaries, for tests.

initdb and pg_ctl refuse to run as root, so as root the cluster runs as `nobody`, in a temp
dir that user owns; it listens on a free port of 127.0.0.1 only, with trust auth.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from tests.conftest import free_port

PG_BIN = Path(os.environ.get("RGRID_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def missing_reason() -> str | None:
    """Why no cluster can be started here, or None."""
    if not (PG_BIN / "initdb").exists() or not (PG_BIN / "pg_ctl").exists():
        return f"PostgreSQL server binaries not found in {PG_BIN} (apt-get install postgresql-15)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: initdb cannot run as root"
    return None


@dataclass
class Cluster:
    port: int
    root: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    async def create_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        name = f"rgrid_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres")
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)


def _as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "nobody", "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str], env: dict[str, str], log: Path | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        detail = done.stderr.strip() or (log.read_text()[-2000:] if log and log.exists() else "")
        raise RuntimeError(f"{argv[-1]} failed: {detail}")


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """Start a cluster; stop it and delete its files afterwards."""
    # Not under pytest's tmp dir: that is private to root and `nobody` could not enter it.
    root = Path(tempfile.mkdtemp(prefix="rgrid-pg-"))
    data, sockets, log = root / "data", root / "sock", root / "server.log"
    sockets.mkdir()
    if os.geteuid() == 0:
        for path in (root, sockets):
            shutil.chown(path, "nobody", pwd.getpwnam("nobody").pw_gid)
    port = free_port()
    env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
    try:
        initdb = [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
        _run(_as_owner([*initdb, "-E", "UTF8", "--no-sync"]), env)
        options = f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off -c max_connections=200"
        start = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options]
        _run(_as_owner([*start, "-w", "-t", "60", "start"]), env, log)
        try:
            yield Cluster(port=port, root=root)
        finally:
            subprocess.run(
                _as_owner([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                capture_output=True,
                env=env,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
