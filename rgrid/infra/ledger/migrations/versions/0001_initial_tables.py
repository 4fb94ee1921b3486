"""initial tables: executions, cache_entries, nodes

Also adopts a ledger made by `create_all` before migrations existed: tables it finds are
completed (missing columns and indexes added, rows kept) instead of created.

Revision ID: 0001
Revises:
Create Date: 2026-11-22 19:57:52
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString as Text

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UtcTime = sa.DateTime(timezone=True)

# The schema as this revision made it, frozen here (never imported from rgrid.infra.ledger.tables).
_meta = sa.MetaData()
TABLES = [
    sa.Table(
        "cache_entries",
        _meta,
        sa.Column("key", Text(), primary_key=True),
        sa.Column("execution_id", Text(), nullable=False),
        sa.Column("script", Text(), nullable=False),
        sa.Column("outputs_json", Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UtcTime, nullable=True, index=True),
        sa.Column("last_hit_at", UtcTime, nullable=True),
        sa.Column("hits", sa.Integer(), nullable=False),
    ),
    sa.Table(
        "executions",
        _meta,
        sa.Column("id", Text(), primary_key=True),
        sa.Column("phase", Text(), nullable=False, index=True),
        sa.Column("script", Text(), nullable=False),
        sa.Column("args_json", Text(), nullable=False),
        sa.Column("tags_json", Text(), nullable=False),
        sa.Column("project", Text(), nullable=False, index=True),
        sa.Column("batch_id", sa.String(), nullable=True, index=True),
        sa.Column("batch_item", sa.Integer(), nullable=True),
        sa.Column("node_id", Text(), nullable=True),
        sa.Column("runtime", Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("created_at", UtcTime, nullable=True, index=True),
        sa.Column("started_at", UtcTime, nullable=True),
        sa.Column("finished_at", UtcTime, nullable=True),
        sa.Column("cost_microns", sa.BigInteger(), nullable=False),
        sa.Column("error", Text(), nullable=True),
        sa.Column("stderr_tail", Text(), nullable=False),
        sa.Column("outputs_json", Text(), nullable=False),
        sa.Column("cache_key", sa.String(), nullable=True, index=True),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("cached_from", Text(), nullable=True),
    ),
    sa.Table(
        "nodes",
        _meta,
        sa.Column("id", Text(), primary_key=True),
        sa.Column("provider", Text(), nullable=False, index=True),
        sa.Column("node_class", Text(), nullable=False),
        sa.Column("server_type", Text(), nullable=False),
        sa.Column("location", Text(), nullable=False),
        sa.Column("server_id", sa.Integer(), nullable=True),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("hourly_price_microns", sa.BigInteger(), nullable=False),
        sa.Column("currency", Text(), nullable=False),
        sa.Column("state", Text(), nullable=False, index=True),
        sa.Column("created_at", UtcTime, nullable=True, index=True),
        sa.Column("ready_at", UtcTime, nullable=True),
        sa.Column("deleted_at", UtcTime, nullable=True),
        sa.Column("caused_by", Text(), nullable=True),
    ),
]


def upgrade() -> None:
    bind = op.get_bind()
    for table in TABLES:
        if not sa.inspect(bind).has_table(table.name):
            table.create(bind)  # with its indexes
        else:
            _complete(bind, table)


def _complete(bind: sa.Connection, table: sa.Table) -> None:
    """Add what an older create_all-made table lacks; its rows stay."""
    inspector = sa.inspect(bind)
    present = {column["name"] for column in inspector.get_columns(table.name)}
    for column in table.columns:
        if column.name not in present:
            # Existing rows need a value for a NOT NULL column: the model's own default.
            fill = None if column.nullable else _FILL.get(type(column.type), sa.text("''"))
            op.add_column(
                table.name,
                sa.Column(column.name, column.type, nullable=column.nullable, server_default=fill),
            )
    indexes = {index["name"] for index in inspector.get_indexes(table.name)}
    for index in table.indexes:
        if index.name not in indexes:
            op.create_index(index.name, table.name, [c.name for c in index.columns])


_FILL: dict[type, sa.ColumnElement[Any] | sa.TextClause] = {
    sa.Boolean: sa.false(),
    sa.Integer: sa.text("0"),
    sa.BigInteger: sa.text("0"),
}


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(TABLES):
        table.drop(bind, checkfirst=True)
