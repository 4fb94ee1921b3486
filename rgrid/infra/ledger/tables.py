"""The ledger's tables: one SQLModel row class per table, and how a row reads back as
the model the rest of rgrid uses. The schema itself is made by the migrations in
rgrid.infra.ledger.migrations; a test holds these classes and the migrations equal.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, overload

from sqlalchemy import BigInteger, DateTime
from sqlmodel import Column, Field, SQLModel, String

from rgrid.models.execution import ExecutionStatus
from rgrid.models.pool import NodeRecord, NodeState


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
    # Server defaults: rows written by an older rgrid (or adopted) waited on the one class
    # of their day, at the default priority.
    node_class: str = Field(default="local", sa_column_kwargs={"server_default": "local"})
    priority: int = Field(default=3, sa_column_kwargs={"server_default": "3"})
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
        return ExecutionStatus(execution_id=self.id, **_utc(data))


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
        return NodeRecord(node_id=self.id, **_utc(self.model_dump(exclude={"id"})))


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


def execution_values(status: ExecutionStatus) -> dict[str, object]:
    """An execution's row as column values (the inverse of ExecutionRow.to_status)."""
    values = status.model_dump(exclude={"execution_id", *_JSON_COLUMNS})
    values["id"] = status.execution_id
    values["phase"] = status.phase.value
    for field, column in _JSON_COLUMNS.items():
        values[column] = json.dumps(status.model_dump(mode="json")[field], sort_keys=True)
    return values


def _utc(data: dict[str, Any]) -> dict[str, Any]:
    return {key: as_utc(v) if isinstance(v, datetime) else v for key, v in data.items()}


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """A datetime read back from the ledger, as the UTC instant it was stored as (SQLite
    hands back naive datetimes; everything rgrid stores is UTC)."""
    return value.replace(tzinfo=UTC) if value and value.tzinfo is None else value
