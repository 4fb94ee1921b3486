"""The ledger's schema, made only by Alembic migrations (the revisions in `versions/`).

Workers (and `rgrid admin setup`) bring the database to the newest revision under a lock
(Postgres: an advisory lock; SQLite: a lock file beside the database), so workers that
start together migrate once. A ledger made before migrations existed (tables, but no
`alembic_version`) is adopted by the first revision, which completes what it finds.

Add a revision after changing a table: `python -m rgrid.infra.ledger.migrations "what changed"`.
Revision ids are sequential numbers (0001, 0002, …), the file names start with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib
import os
import pkgutil
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

VERSIONS = Path(__file__).parent / "versions"


def import_all_models() -> None:
    """Import every rgrid module, so each table, wherever it is defined, is on
    SQLModel.metadata (for autogenerate and the test that compares it with migrations)."""
    import rgrid

    for module in pkgutil.walk_packages(rgrid.__path__, "rgrid."):
        if not module.name.endswith(("__main__", ".env")) and ".versions." not in module.name:
            importlib.import_module(module.name)


def head_revision() -> str:
    """The newest revision this rgrid knows, read from file names (cheap: no Alembic)."""
    return max(path.name[:4] for path in VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))


async def schema_revision(engine: AsyncEngine) -> str | None:
    """The revision a database is at; None when it was never migrated."""
    async with engine.connect() as conn:
        try:
            return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        except DBAPIError as exc:
            if _no_such_table(exc):
                return None
            raise


def _no_such_table(exc: DBAPIError) -> bool:
    message = str(exc.orig).lower()
    return "no such table" in message or "does not exist" in message


@contextlib.asynccontextmanager
async def sqlite_file_lock(database: str | None) -> AsyncIterator[None]:
    """Held while one process looks at or migrates a SQLite ledger's schema: those that
    open it meanwhile wait here (the kernel drops the lock if its holder dies) rather than
    on SQLite's busy timeout, which a slow migration on a loaded machine outlasts. A
    database of no file (in memory) is this process's alone: no lock."""
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + ".migrate-lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # and with it the lock
