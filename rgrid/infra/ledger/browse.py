"""Browsing the executions table page by page, filtered (the web console's lists): the
filters and paging run in the database, so a page costs the same with 10 rows or 100,000.
A table family of `Ledger` (see base.py): `ledger.page_executions(...)`."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, String, cast, func, or_
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rgrid.infra.ledger.base import LedgerPart
from rgrid.infra.ledger.tables import ExecutionRow
from rgrid.models.execution import ExecutionStatus, Phase


class ExecutionFilter(BaseModel):
    """What a list of executions is narrowed to; every field is optional."""

    phase: Phase | None = None
    project: str | None = None
    script: str | None = None  # the script's name, exactly
    tags: dict[str, str] = Field(default_factory=dict)  # every pair must match
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    search: str | None = None  # part of the id, or of an argument (input names are args)
    batch_id: str | None = None


class ExecutionPage(BaseModel):
    """One page of executions, newest first, and how many match in all."""

    rows: list[ExecutionStatus]
    total: int
    offset: int
    limit: int


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _conditions(postgres: bool, where: ExecutionFilter) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if where.phase is not None:
        found.append(col(ExecutionRow.phase) == where.phase.value)
    if where.project:
        found.append(col(ExecutionRow.project) == where.project)
    if where.script:
        found.append(col(ExecutionRow.script) == where.script)
    if where.batch_id:
        found.append(col(ExecutionRow.batch_id) == where.batch_id)
    if where.since is not None:
        found.append(col(ExecutionRow.created_at) >= where.since)
    if where.until is not None:
        found.append(col(ExecutionRow.created_at) < where.until)
    for key, value in where.tags.items():
        if postgres:
            tag = cast(col(ExecutionRow.tags_json), JSONB)[key].astext
        else:  # a JSON path with the key quoted, so dots and spaces in keys stay literal
            path = '$."' + key.replace('"', '""') + '"'
            tag = func.json_extract(col(ExecutionRow.tags_json), path)
        found.append(cast(tag, String) == value)
    if where.search:
        pattern = _like(where.search)
        found.append(
            or_(
                col(ExecutionRow.id).like(pattern, escape="\\"),
                col(ExecutionRow.args_json).like(pattern, escape="\\"),
            )
        )
    return found


class BrowseRows(LedgerPart):
    """Filtered, paged reads of the executions table."""

    async def page_executions(
        self, where: ExecutionFilter, offset: int = 0, limit: int = 50
    ) -> ExecutionPage:
        """A page of matching executions, newest first, with the number that match."""
        conditions = _conditions(self.engine.dialect.name == "postgresql", where)
        rows_query = (
            select(ExecutionRow)
            .where(*conditions)
            # created_at alone: its index answers the order (a second key costs a sort of every
            # row, 100x slower at 10,000); microsecond times make ties rare.
            .order_by(col(ExecutionRow.created_at).desc())
            .offset(offset)
            .limit(limit)
        )
        count_query = select(func.count()).select_from(ExecutionRow).where(*conditions)
        async with AsyncSession(self.engine) as session:
            rows = (await session.exec(rows_query)).all()
            total = (await session.exec(count_query)).one()
        return ExecutionPage(
            rows=[row.to_status() for row in rows], total=int(total), offset=offset, limit=limit
        )

    async def execution_choices(self) -> tuple[list[str], list[str]]:
        """The projects and the script names that occur, for the filters' choices."""
        async with AsyncSession(self.engine) as session:
            projects = (await session.exec(select(ExecutionRow.project).distinct())).all()
            scripts = (await session.exec(select(ExecutionRow.script).distinct())).all()
        return sorted(p for p in projects if p), sorted(s for s in scripts if s)
