"""The ledger's schema, made only by Alembic migrations (the revisions in `versions/`).

Workers (and `rgrid admin setup`) bring the database to the newest revision under a lock
(Postgres: an advisory lock; SQLite: a lock file beside the database), so workers that
start together migrate once. A ledger made before migrations existed (tables, but no
`alembic_version`) is adopted by the first revision, which completes what it finds.

Add a revision after changing a table: `python -m rgrid.infra.ledger.migrations "what changed"`.
Revision ids are sequential numbers (0001, 0002, …), the file names start with them.
"""

from __future__ import annotations

import importlib
import pkgutil
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
