"""What every table family of the ledger shares: the engine, and the two statements that
must be one atomic SQL statement on both dialects (an upsert, an insert-if-absent).

A table family is a class here in the package (`ExecutionRows` in executions.py,
`NodeRows` in nodes.py, `MoneyRows` in money.py): it subclasses `LedgerPart`, holds every
query on its tables, takes and returns models (never rows), and is one base of `Ledger`,
so callers write `ledger.save_node(...)` and never see SQL. A new family (the result
cache's, say) is one more module: its row class in tables.py, `class CacheRows(LedgerPart)`
in cache.py with methods named for what they do (`cache_entry(key) -> CacheHit | None`),
and `CacheRows` added to `Ledger`'s bases.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel


class LedgerPart:
    """A table family's queries, on the ledger's engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # The two statements below, built once per shape and then only given values:
        # building one (and SQLAlchemy's cache key for it) took more CPU than running it,
        # 2.3 of 3.8 ms for an execution's row on SQLite, three times per run.
        self._statements: dict[tuple[Hashable, ...], Any] = {}

    def _insert(self, model: type[SQLModel]) -> Any:
        table = model.__table__  # type: ignore[attr-defined]
        insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        return insert(table)

    async def _upsert(
        self,
        model: type[SQLModel],
        values: dict[str, Any],
        where: Callable[[], ColumnElement[bool]],
        where_key: Hashable,
    ) -> None:
        """Insert a row, or update the existing one (same "id") when `where()` holds for
        it; `where_key` names that condition (the same key, the same condition)."""
        columns = tuple(key for key in values if key != "id")
        shape = ("upsert", model, columns, where_key)
        if (statement := self._statements.get(shape)) is None:
            insert = self._insert(model)
            statement = insert.on_conflict_do_update(
                index_elements=["id"],
                set_={column: insert.excluded[column] for column in columns},
                where=where(),
            )
            self._statements[shape] = statement
        async with self.engine.begin() as conn:
            await conn.execute(statement, values)

    async def _insert_if_absent(self, model: type[SQLModel], values: dict[str, Any]) -> bool:
        """Insert a row unless its key exists; True when this call inserted it."""
        shape = ("insert", model, tuple(values))
        if (statement := self._statements.get(shape)) is None:
            statement = self._statements[shape] = self._insert(model).on_conflict_do_nothing()
        async with self.engine.begin() as conn:
            result = await conn.execute(statement, values)
        return bool(result.rowcount)
