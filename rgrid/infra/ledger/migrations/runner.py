"""Running rgrid's Alembic migrations (imported only when a migration may be due: Alembic
adds a third of a second to start-up)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from rgrid.infra.ledger.migrations import sqlite_file_lock

log = structlog.get_logger()

HERE = Path(__file__).parent
# Any fixed 64-bit number: every rgrid process that migrates takes the same lock.
ADVISORY_LOCK_ID = 0x726772_6964_0001


def alembic_config() -> Config:
    """Alembic's config for rgrid's revisions (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    return config


def alembic_head() -> str | None:
    """The newest revision, as Alembic resolves the revision graph."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision a database is at (None: never migrated)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def upgrade(engine: AsyncEngine) -> tuple[str | None, str | None]:
    """Migrate the database to the head revision; returns (before, after)."""
    async with _migration_lock(engine) as conn:
        before = await conn.run_sync(_current)
        await conn.run_sync(_upgrade)
        after = await conn.run_sync(_current)
    if before != after:
        log.info("ledger_migrated", before=before, after=after)
    return before, after


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _upgrade(conn: Connection) -> None:
    if _current(conn) is None and inspect(conn).has_table("executions"):
        # Made by create_all before migrations existed: the first revision completes it.
        log.info("ledger_adopted", tables=sorted(inspect(conn).get_table_names()))
    config = alembic_config()
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


@contextlib.asynccontextmanager
async def _migration_lock(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction, held by one migrating process at a time."""
    url = engine.url
    if url.get_backend_name() == "postgresql":
        async with engine.begin() as conn:
            # Released by the commit that also makes the migration visible.
            await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": ADVISORY_LOCK_ID})
            yield conn
        return
    async with sqlite_file_lock(url.database), engine.begin() as conn:
        yield conn
