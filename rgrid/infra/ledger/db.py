"""The ledger: one row per execution, in SQLite (default) or Postgres; its schema is made
by the migrations in rgrid.infra.ledger.migrations.

Rows only move forward: a late or replayed write never takes a terminal execution back
to a running phase.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

from sqlalchemy import BigInteger, ColumnElement, DateTime, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import Column, Field, SQLModel, String, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rgrid.errors import ConfigError, NotFoundError, ServiceUnavailableError
from rgrid.infra.ledger.migrations import head_revision, schema_revision
from rgrid.models.execution import ExecutionStatus, Phase
from rgrid.models.pool import NodeRecord, NodeState


class SchemaBehindError(ConfigError):
    """The ledger's schema is older than this rgrid and the caller may not migrate it."""


class ExecutionRow(SQLModel, table=True):
    """The ledger row of one execution."""

    __tablename__ = "executions"

    id: str = Field(primary_key=True)
    phase: str = Field(index=True)
    script: str = ""
    args_json: str = "[]"
    tags_json: str = "{}"
    project: str = Field(default="default", index=True)
    batch_id: str | None = Field(default=None, sa_column=Column(String, index=True))
    batch_item: int | None = None
    node_id: str | None = None
    runtime: str | None = None
    attempts: int = 0
    exit_code: int | None = None
    created_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), index=True)
    )
    started_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    finished_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    cost_microns: int = Field(default=0, sa_type=BigInteger)
    error: str | None = None
    stderr_tail: str = ""
    outputs_json: str = "[]"
    cache_key: str | None = Field(default=None, sa_column=Column(String, index=True))
    cached: bool = False
    cached_from: str | None = None

    def to_status(self) -> ExecutionStatus:
        """The row as the model the CLI renders."""
        data = self.model_dump(exclude={"id", *_JSON_COLUMNS.values()})
        for field, column in _JSON_COLUMNS.items():
            data[field] = json.loads(getattr(self, column))
        for field in ("created_at", "started_at", "finished_at"):
            data[field] = as_utc(data[field])
        return ExecutionStatus(execution_id=self.id, **data)


class CacheEntryRow(SQLModel, table=True):
    """A result that may be served again: the successful execution whose outputs it is."""

    __tablename__ = "cache_entries"

    key: str = Field(primary_key=True)
    execution_id: str
    script: str = ""
    outputs_json: str = "[]"
    size_bytes: int = Field(default=0, sa_type=BigInteger)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), index=True))
    last_hit_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    hits: int = 0


class NodeRow(SQLModel, table=True):
    """A node that rgrid started, alive or gone: what it bills comes from here."""

    __tablename__ = "nodes"

    id: str = Field(primary_key=True)
    provider: str = Field(default="local", index=True)
    node_class: str = "local"
    server_type: str = ""
    location: str = ""
    server_id: int | None = None
    slots: int = 1
    hourly_price_microns: int = Field(default=0, sa_type=BigInteger)
    currency: str = "EUR"
    state: str = Field(default=NodeState.PROVISIONING.value, index=True)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), index=True))
    ready_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    deleted_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    caused_by: str | None = None

    def to_record(self) -> NodeRecord:
        """The row as the model workflows and the CLI use."""
        data = self.model_dump(exclude={"id"})
        for field in ("created_at", "ready_at", "deleted_at"):
            data[field] = as_utc(data[field])
        return NodeRecord(node_id=self.id, **data)


class ScriptRunRow(SQLModel, table=True):
    """Which script (by content hash) an execution ran: estimates read earlier durations."""

    __tablename__ = "script_runs"

    execution_id: str = Field(primary_key=True)
    script_sha256: str = Field(index=True)
    node_class: str = "local"


class LimitRow(SQLModel, table=True):
    """A spending limit: for one project, or for everything when project is "*"."""

    __tablename__ = "spending_limits"

    project: str = Field(primary_key=True)
    amount_microns: int = Field(sa_type=BigInteger)
    period: str = "month"
    alert_at_percent: int = 80
    webhook: str | None = None
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True)))
    # The month's spend when last checked: commands read it while it is fresh.
    spent_microns: int = Field(default=0, sa_type=BigInteger)
    checked_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class AlertRow(SQLModel, table=True):
    """A limit crossing, once: its key names the limit, period and threshold."""

    __tablename__ = "limit_alerts"

    key: str = Field(primary_key=True)
    project: str
    threshold_percent: int
    spent_microns: int = Field(sa_type=BigInteger)
    limit_microns: int = Field(sa_type=BigInteger)
    period_start: datetime = Field(sa_column=Column(DateTime(timezone=True)))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True)))
    shown_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    webhook: str | None = None
    dispatched_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


# ExecutionStatus fields kept as JSON text, and their columns.
_JSON_COLUMNS = {"args": "args_json", "tags": "tags_json", "outputs": "outputs_json"}


def _row_values(status: ExecutionStatus) -> dict[str, object]:
    values = status.model_dump(exclude={"execution_id", *_JSON_COLUMNS})
    values["phase"] = status.phase.value
    for field, column in _JSON_COLUMNS.items():
        values[column] = json.dumps(status.model_dump(mode="json")[field], sort_keys=True)
    return values


def phases_before(phase: Phase) -> set[Phase]:
    """The phases a row may be in for `phase` to be written over it: itself, and the
    earlier non-terminal ones."""
    order = list(Phase)
    if phase.terminal:
        return {phase, *(p for p in order if not p.terminal)}
    return {p for p in order[: order.index(phase) + 1]}


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """A datetime read back from the ledger, as the UTC instant it was stored as (SQLite
    hands back naive datetimes; everything rgrid stores is UTC)."""
    return value.replace(tzinfo=UTC) if value and value.tzinfo is None else value


class Ledger:
    """Reads and writes execution rows."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

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

    async def upsert(self, status: ExecutionStatus) -> None:
        """Write an execution's state; the phase only moves forward, and a terminal row
        takes no other phase (a late or replayed event changes nothing)."""
        values = {"id": status.execution_id, **_row_values(status)}
        # One atomic statement, so concurrent writers cannot interleave a read and a write.
        await self._upsert(
            ExecutionRow,
            values,
            where=col(ExecutionRow.phase).in_([p.value for p in phases_before(status.phase)]),
        )

    async def get(self, execution_id: str) -> ExecutionStatus:
        """One execution, or NotFoundError."""
        async with AsyncSession(self.engine) as session:
            row = await session.get(ExecutionRow, execution_id)
        if row is None:
            raise NotFoundError(
                f"no execution {execution_id!r}", "see `rgrid list` for recent executions"
            )
        return row.to_status()

    async def recent(
        self,
        limit: int = 20,
        phase: Phase | None = None,
        tags: dict[str, str] | None = None,
    ) -> list[ExecutionStatus]:
        """Newest executions first, filtered by phase and tags."""
        query = select(ExecutionRow).order_by(col(ExecutionRow.created_at).desc())
        if phase is not None:
            query = query.where(ExecutionRow.phase == phase.value)
        async with AsyncSession(self.engine) as session:
            rows = (await session.exec(query)).all()
        found = []
        for row in rows:
            status = row.to_status()
            if tags and any(status.tags.get(k) != v for k, v in tags.items()):
                continue
            found.append(status)
            if len(found) >= limit:
                break
        return found

    async def of_batch(self, batch_id: str) -> list[ExecutionStatus]:
        """Every execution of a batch, oldest first (retries come after the first try)."""
        query = (
            select(ExecutionRow)
            .where(ExecutionRow.batch_id == batch_id)
            .order_by(col(ExecutionRow.created_at))
        )
        async with AsyncSession(self.engine) as session:
            rows = (await session.exec(query)).all()
        return [row.to_status() for row in rows]

    async def save_node(self, node: NodeRecord) -> None:
        """Create or update a node's row; a deleted node is never brought back."""
        values = {"id": node.node_id, **node.model_dump(exclude={"node_id"})}
        values["state"] = node.state.value
        await self._upsert(NodeRow, values, where=col(NodeRow.state) != NodeState.DELETED.value)

    async def _upsert(
        self, model: type[SQLModel], values: dict[str, Any], where: ColumnElement[bool]
    ) -> None:
        """Insert a row, or update the existing one when `where` holds for it."""
        table = model.__table__  # type: ignore[attr-defined]
        insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        update = {key: value for key, value in values.items() if key != "id"}
        statement = (
            insert(table)
            .values(values)
            .on_conflict_do_update(index_elements=["id"], set_=update, where=where)
        )
        async with self.engine.begin() as conn:
            await conn.execute(statement)

    async def nodes(self, include_deleted: bool = False) -> list[NodeRecord]:
        """Nodes, oldest first; only the live ones unless asked."""
        query = select(NodeRow).order_by(col(NodeRow.created_at))
        if not include_deleted:
            query = query.where(NodeRow.state != NodeState.DELETED.value)
        async with AsyncSession(self.engine) as session:
            rows = (await session.exec(query)).all()
        return [row.to_record() for row in rows]


async def _ensure_schema(engine: AsyncEngine, migrate: bool) -> None:
    where = engine.url.render_as_string(hide_password=True)
    try:
        # The common case costs one query; Alembic is imported only when work is due.
        revision = await schema_revision(engine)
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


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    # WAL lets the CLI read while the worker writes; busy_timeout waits out short locks.
    cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
