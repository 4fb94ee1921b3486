"""The console's ledger reads on SQLite and a real PostgreSQL cluster: every filter
narrows in the database, on both sides of its edge, and pages cover each row once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rgrid.infra.ledger import Ledger
from rgrid.infra.ledger.browse import ExecutionFilter
from rgrid.models.execution import ExecutionStatus, Phase

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ledger]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    else:
        url = await request.getfixturevalue("postgres").create_database()
    opened = await Ledger.open(url)
    for day in range(10):
        await opened.upsert(
            ExecutionStatus(
                execution_id=f"exec-{day:02d}",
                phase=Phase.FAILED if day % 3 == 0 else Phase.SUCCEEDED,
                script="a.py" if day < 5 else "b.py",
                args=[f"data/input_{day}.csv"],
                tags={"team": "geo" if day % 2 else "ml", "odd.key": "x y"},
                project="geo" if day >= 7 else "default",
                created_at=T0 + timedelta(days=day),
            )
        )
    yield opened
    await opened.close()


async def ids(ledger: Ledger, where: ExecutionFilter) -> list[str]:
    page = await ledger.page_executions(where, 0, 100)
    assert page.total == len(page.rows)
    return [row.execution_id for row in page.rows]


async def test_filters_narrow_in_the_database(ledger: Ledger) -> None:
    assert await ids(ledger, ExecutionFilter()) == [f"exec-{d:02d}" for d in range(9, -1, -1)]
    assert await ids(ledger, ExecutionFilter(phase=Phase.FAILED)) == [
        "exec-09",
        "exec-06",
        "exec-03",
        "exec-00",
    ]
    assert await ids(ledger, ExecutionFilter(project="geo")) == ["exec-09", "exec-08", "exec-07"]
    assert await ids(ledger, ExecutionFilter(script="b.py", tags={"team": "geo"})) == [
        "exec-09",
        "exec-07",
        "exec-05",
    ]
    assert len(await ids(ledger, ExecutionFilter(tags={"odd.key": "x y"}))) == 10
    assert await ids(ledger, ExecutionFilter(tags={"team": "nobody"})) == []


async def test_a_date_range_includes_its_start_and_excludes_its_end(ledger: Ledger) -> None:
    window = ExecutionFilter(since=T0 + timedelta(days=2), until=T0 + timedelta(days=4))
    assert await ids(ledger, window) == ["exec-03", "exec-02"]


async def test_search_finds_ids_and_input_names_and_wildcards_are_literal(ledger: Ledger) -> None:
    assert await ids(ledger, ExecutionFilter(search="input_4.csv")) == ["exec-04"]
    assert await ids(ledger, ExecutionFilter(search="exec-0")) != []
    assert await ids(ledger, ExecutionFilter(search="exec-07")) == ["exec-07"]
    # `_` and `%` match themselves, not any character.
    assert await ids(ledger, ExecutionFilter(search="input%")) == []
    assert await ids(ledger, ExecutionFilter(search="t_4")) == ["exec-04"]
    assert await ids(ledger, ExecutionFilter(search="tX4")) == []


async def test_pages_cover_every_row_once(ledger: Ledger) -> None:
    seen: list[str] = []
    for offset in range(0, 12, 4):
        page = await ledger.page_executions(ExecutionFilter(), offset, 4)
        assert page.total == 10
        seen += [row.execution_id for row in page.rows]
    assert sorted(seen) == [f"exec-{d:02d}" for d in range(10)]


async def test_filter_choices_are_the_projects_and_scripts_in_use(ledger: Ledger) -> None:
    assert await ledger.execution_choices() == (["default", "geo"], ["a.py", "b.py"])
