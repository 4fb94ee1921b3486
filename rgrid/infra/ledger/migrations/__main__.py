"""Write a new revision for what changed in the tables: compares a database migrated to
the current head with SQLModel.metadata (autogenerate) and writes `versions/NNNN_*.py`.

    python -m rgrid.infra.ledger.migrations "add the invoices table"

Review the file it writes; Alembic cannot see renames, nor data that must move.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from rgrid.infra.ledger.migrations import import_all_models
from rgrid.infra.ledger.migrations.runner import alembic_config, upgrade


def _next_id() -> str:
    script = ScriptDirectory.from_config(alembic_config())
    numbers = [int(rev.revision) for rev in script.walk_revisions() if rev.revision.isdigit()]
    return f"{max(numbers, default=0) + 1:04d}"


def _format_with_ruff(config: Config) -> None:
    """Let Alembic run ruff on the file it writes, when ruff is installed."""
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        return
    config.set_section_option("post_write_hooks", "hooks", "fix, format")
    for name, options in (("fix", "check --fix --quiet"), ("format", "format --quiet")):
        config.set_section_option("post_write_hooks", f"{name}.type", "exec")
        config.set_section_option("post_write_hooks", f"{name}.executable", str(ruff))
        config.set_section_option(
            "post_write_hooks", f"{name}.options", f"{options} REVISION_SCRIPT_FILENAME"
        )


async def _write(message: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_async_engine(f"sqlite+aiosqlite:///{Path(tmp) / 'ledger.db'}")
        await upgrade(engine)

        def revise(conn: Connection) -> None:
            config = alembic_config()
            config.attributes["connection"] = conn
            _format_with_ruff(config)
            command.revision(config, message, autogenerate=True, rev_id=_next_id())

        async with engine.begin() as conn:
            await conn.run_sync(revise)
        await engine.dispose()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    import_all_models()
    asyncio.run(_write(sys.argv[1]))
