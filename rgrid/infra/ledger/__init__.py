"""The ledger: rgrid's database, SQLite (default) or Postgres, and the only code that
writes SQL. `Ledger` opens it (migrating its schema, see `migrations/`) and answers every
query through one table family per module: executions.py, nodes.py, money.py (script
runs, spending limits, alerts), cache.py (result cache entries), browse.py (the
console's filtered pages); tables.py holds the row classes they share.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from rgrid.errors import ConfigError, ServiceUnavailableError
from rgrid.infra.ledger.browse import BrowseRows
from rgrid.infra.ledger.cache import CacheRows
from rgrid.infra.ledger.executions import ExecutionRows
from rgrid.infra.ledger.migrations import head_revision, schema_revision, sqlite_file_lock
from rgrid.infra.ledger.money import MoneyRows
from rgrid.infra.ledger.nodes import NodeRows


class SchemaBehindError(ConfigError):
    """The ledger's schema is older than this rgrid and the caller may not migrate it."""


class Ledger(ExecutionRows, NodeRows, MoneyRows, CacheRows, BrowseRows):
    """The ledger database: each base class holds one table family's queries."""

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> Ledger:
        """Connect; migrate the schema to the newest revision when it is behind (workers,
        `rgrid admin setup`), or with `migrate=False` refuse a schema that is behind."""
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # The user's alone, whoever opens it first (SQLite keeps an existing file's mode).
            os.close(os.open(parsed.database, os.O_CREAT | os.O_WRONLY, 0o600))
        engine = create_async_engine(url)
        if parsed.get_backend_name() == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        try:
            await _ensure_schema(engine, migrate)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

    async def close(self) -> None:
        """Release the connection pool."""
        await self.engine.dispose()


async def _ensure_schema(engine: AsyncEngine, migrate: bool) -> None:
    where = engine.url.render_as_string(hide_password=True)
    try:
        # The common case costs one query; Alembic is imported only when work is due.
        revision = await _revision(engine)
        if revision == head_revision():
            return
        if revision is not None and revision > head_revision():  # ids are sequential
            raise ConfigError(
                f"the ledger at {where} is at schema {revision}, newer than this rgrid "
                f"knows ({head_revision()})",
                "upgrade rgrid to the version the workers run",
            )
        if not migrate:
            raise SchemaBehindError(
                f"the ledger at {where} is at schema {revision or 'none'}, "
                f"this rgrid needs {head_revision()}",
                "run `rgrid admin setup` (or start a worker) to migrate it",
            )
        from rgrid.infra.ledger.migrations.runner import upgrade

        await upgrade(engine)
    except (OSError, OperationalError, InterfaceError) as exc:
        raise ServiceUnavailableError(
            f"the ledger database at {where} does not answer ({_first_line(exc)})",
            "check RGRID_DATABASE_URL and that the database is up",
        ) from exc


async def _revision(engine: AsyncEngine) -> str | None:
    if engine.url.get_backend_name() != "sqlite":
        return await schema_revision(engine)
    # Not while another process migrates it (the lock is released before a migration of
    # ours, which takes it again).
    async with sqlite_file_lock(engine.url.database):
        return await schema_revision(engine)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    # WAL lets the CLI read while the worker writes; busy_timeout waits out short locks.
    cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA busy_timeout=5000")  # first: switching to WAL may wait too
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
