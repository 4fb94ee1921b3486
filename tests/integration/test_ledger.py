"""The ledger on SQLite and on a real PostgreSQL cluster: schema by migrations only, rows
that only move forward under concurrent writers, cache entries and nodes."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, MetaData, Table, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

from rgrid.cache.service import ResultCache
from rgrid.errors import ConfigError, ServiceUnavailableError
from rgrid.infra.ledger import Ledger
from rgrid.infra.ledger.migrations import head_revision, import_all_models, schema_revision
from rgrid.infra.ledger.migrations.runner import alembic_head
from rgrid.infra.ledger.tables import CacheEntryRow, ExecutionRow, NodeRow
from rgrid.infra.storage.base import output_prefix
from rgrid.infra.storage.local import LocalStorage
from rgrid.models.execution import ExecutionStatus, OutputFile, Phase
from rgrid.models.pool import NodeRecord, NodeState
from tests.conftest import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgres"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    cluster = request.getfixturevalue("postgres")
    return await cluster.create_database()


@pytest.fixture
async def ledger(url: str) -> AsyncIterator[Ledger]:
    opened = await Ledger.open(url)
    yield opened
    await opened.close()


def _differences(conn: Connection) -> list[object]:
    import_all_models()  # a table defined anywhere in rgrid counts
    return list(compare_metadata(MigrationContext.configure(conn), SQLModel.metadata))


async def test_migrated_schema_matches_the_models_exactly(ledger: Ledger) -> None:
    # A table or column added to the models without a revision fails here.
    async with ledger.engine.connect() as conn:
        assert await conn.run_sync(_differences) == []
    assert await schema_revision(ledger.engine) == head_revision() == alembic_head()


async def test_workers_starting_at_once_migrate_once(url: str) -> None:
    ledgers = await asyncio.gather(*(Ledger.open(url) for _ in range(6)))
    try:
        async with ledgers[0].engine.connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
            assert await conn.run_sync(_differences) == []
        assert versions == [(head_revision(),)]
    finally:
        await asyncio.gather(*(ledger.close() for ledger in ledgers))


# Columns later revisions added: no ledger made by create_all had them (0003).
LATER_COLUMNS = {"node_class", "priority"}


def _legacy_executions(conn: Connection, without: set[str]) -> None:
    """The executions table as create_all made it, less the columns named."""
    columns = [
        c._copy() for c in ExecutionRow.__table__.columns if c.name not in without | LATER_COLUMNS
    ]
    Table("executions", MetaData(), *columns).create(conn)


@pytest.mark.parametrize("made_by", ["create_all before migrations", "create_all before the cache"])
async def test_a_ledger_made_before_migrations_is_adopted_with_its_rows(
    url: str, made_by: str
) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        if made_by == "create_all before migrations":
            # The tables rgrid had when create_all still made the schema.
            await conn.run_sync(_legacy_executions, set())
            tables = [CacheEntryRow.__table__, NodeRow.__table__]
            await conn.run_sync(SQLModel.metadata.create_all, tables)
        else:  # the executions table as the core slice made it: no cache columns
            await conn.run_sync(_legacy_executions, {"cache_key", "cached", "cached_from"})
        columns = "id, phase, script, args_json, tags_json, project, attempts, cost_microns"
        values = "'exec-old', 'succeeded', 'old.py', '[]', '{}', 'default', 1, 42"
        if made_by == "create_all before migrations":
            columns, values = f"{columns}, cached", f"{values}, false"
        await conn.execute(
            text(
                f"INSERT INTO executions ({columns}, stderr_tail, outputs_json) "
                f"VALUES ({values}, '', '[]')"
            )
        )
    await engine.dispose()

    ledger = await Ledger.open(url)
    try:
        old = await ledger.get("exec-old")
        assert (old.phase, old.script, old.cost_microns, old.cached) == (
            Phase.SUCCEEDED,
            "old.py",
            42,
            False,
        )
        async with ledger.engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
        await ledger.upsert(ExecutionStatus(execution_id="exec-new", cache_key="k", cached=True))
        assert (await ledger.get("exec-new")).cached
    finally:
        await ledger.close()


async def test_a_client_refuses_a_ledger_that_was_never_migrated(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        await Ledger.open(url, migrate=False)
    assert "run `rgrid admin setup`" in caught.value.one_line()


async def test_a_database_that_does_not_answer_is_one_clear_error() -> None:
    dead = f"postgresql+asyncpg://rgrid:secret@127.0.0.1:{free_port()}/rgrid"
    with pytest.raises(ServiceUnavailableError) as caught:
        await Ledger.open(dead)
    assert "does not answer" in caught.value.message
    assert "secret" not in caught.value.one_line()


ORDER = [Phase.QUEUED, Phase.STAGING, Phase.RUNNING, Phase.COLLECTING]
FINAL = [Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED, Phase.TIMED_OUT]


async def test_phase_only_moves_forward_under_concurrent_writers(url: str) -> None:
    # Several engines (as several workers and CLIs) write every phase of the same
    # executions in random order; each row ends at its furthest phase, and once one
    # terminal phase is written no other replaces it.
    ledgers = [await Ledger.open(url) for _ in range(3)]
    ids = [f"exec-{n}" for n in range(12)]
    final = {eid: random.choice(FINAL) for eid in ids}
    rival = {eid: random.choice([p for p in FINAL if p != final[eid]]) for eid in ids}

    async def write(eid: str, phase: Phase) -> None:
        ledger = random.choice(ledgers)
        await ledger.upsert(ExecutionStatus(execution_id=eid, phase=phase, attempts=1))

    try:
        # Every terminal write lands after all the running ones, racing its rival: one of
        # the two wins (which one commits first is the database's call, not ours).
        await asyncio.gather(*(write(eid, p) for eid in ids for p in random.sample(ORDER, 4)))
        await asyncio.gather(*(write(eid, p) for eid in ids for p in (final[eid], rival[eid])))
        settled = {eid: (await ledgers[0].get(eid)).phase for eid in ids}
        assert all(settled[eid] in (final[eid], rival[eid]) for eid in ids), settled
        # Late events, and the losing rival again, change nothing.
        await asyncio.gather(*(write(eid, p) for eid in ids for p in ORDER))
        await asyncio.gather(*(write(eid, p) for eid in ids for p in (final[eid], rival[eid])))
        for eid in ids:
            assert (await ledgers[0].get(eid)).phase == settled[eid], eid
    finally:
        for ledger in ledgers:
            await ledger.close()


async def test_a_late_running_event_never_reopens_a_finished_execution(ledger: Ledger) -> None:
    done = datetime.now(UTC)
    await ledger.upsert(ExecutionStatus(execution_id="e", phase=Phase.RUNNING, node_id="n1"))
    await ledger.upsert(
        ExecutionStatus(execution_id="e", phase=Phase.SUCCEEDED, exit_code=0, finished_at=done)
    )
    await ledger.upsert(ExecutionStatus(execution_id="e", phase=Phase.RUNNING, node_id="n2"))
    await ledger.upsert(ExecutionStatus(execution_id="e", phase=Phase.FAILED, exit_code=3))

    row = await ledger.get("e")
    assert (row.phase, row.exit_code, row.finished_at) == (Phase.SUCCEEDED, 0, done)
    # The same terminal phase again (a retried record) may refine the row.
    await ledger.upsert(ExecutionStatus(execution_id="e", phase=Phase.SUCCEEDED, exit_code=0))
    assert (await ledger.get("e")).phase is Phase.SUCCEEDED


async def test_cache_entries_are_stored_found_and_dropped(ledger: Ledger, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    cache = ResultCache(ledger, storage, timedelta(days=30))
    output = OutputFile(path="out.txt", size=2, sha256="0" * 64)
    await storage.put_bytes(output_prefix("exec-src") + "out.txt", b"ok")
    status = ExecutionStatus(
        execution_id="exec-src",
        phase=Phase.SUCCEEDED,
        created_at=datetime.now(UTC),
        outputs=[output],
        cache_key="key-1",
    )
    await ledger.upsert(status)
    assert await cache.store(status)

    hit = await cache.live_entry("key-1")
    assert hit is not None and hit.execution_id == "exec-src" and hit.outputs == [output]
    assert await cache.live_entry("key-2") is None

    (tmp_path / "storage" / output_prefix("exec-src") / "out.txt").unlink()
    assert await cache.live_entry("key-1") is None  # its outputs expired: a miss, and dropped


async def test_node_rows_are_saved_and_a_deleted_node_stays_deleted(ledger: Ledger) -> None:
    now = datetime.now(UTC)
    node = NodeRecord(node_id="n1", state=NodeState.READY, created_at=now, slots=2)
    await ledger.save_node(node)
    await ledger.save_node(node.model_copy(update={"state": NodeState.DELETED, "deleted_at": now}))
    await ledger.save_node(node.model_copy(update={"state": NodeState.READY}))

    assert await ledger.nodes() == []
    [gone] = await ledger.nodes(include_deleted=True)
    assert (gone.node_id, gone.state, gone.slots, gone.deleted_at) == (
        "n1",
        NodeState.DELETED,
        2,
        now,
    )


async def test_rows_written_by_one_engine_are_read_by_another(url: str, ledger: Ledger) -> None:
    other = await Ledger.open(url, migrate=False)
    try:
        await ledger.upsert(ExecutionStatus(execution_id="shared", tags={"team": "geo"}))
        [row] = await other.recent(tags={"team": "geo"})
        assert row.execution_id == "shared"
        async with other.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        assert {"executions", "cache_entries", "nodes", "alembic_version"} <= set(tables)
    finally:
        await other.close()


async def test_a_ledger_migrated_by_a_newer_rgrid_is_refused_untouched(url: str) -> None:
    ledger = await Ledger.open(url)
    async with ledger.engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    await ledger.close()

    for migrate in (True, False):
        with pytest.raises(ConfigError) as caught:
            await Ledger.open(url, migrate=migrate)
        assert "newer than this rgrid" in caught.value.one_line()
        assert "upgrade rgrid" in caught.value.one_line()
