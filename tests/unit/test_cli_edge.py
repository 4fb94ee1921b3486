"""The CLI edge's pure parts: the option rule, tables that fit, the batch bar."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from rgrid.cli.batch_view import BatchView
from rgrid.cli.options import close_to
from rgrid.cli.tables import Column, fitted_table
from rgrid.models.batch import BatchProgress

KNOWN = ["--parallel", "--retries", "--dry-run", "--env", "--json", "--timeout"]


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("--paralel", "--parallel"),
        ("--parallell", "--parallel"),
        ("--par", "--parallel"),
        ("--retires", "--retries"),
        ("--dry-rn", "--dry-run"),
        ("--jsno", None),  # short names: only one letter off counts
        ("--jso", "--json"),
        ("--verbose", None),
        ("--in", None),
    ],
)
def test_near_misses_are_found_and_others_are_not(typed: str, meant: str | None) -> None:
    assert close_to(typed, KNOWN) == meant


COLUMNS = [
    Column("phase", priority=4),
    Column("script", priority=3),
    Column("created", priority=2),
    Column("tags", priority=0),
    Column("id", whole=True),
]
ROW = ["succeeded", "a_long_script_name.py", "23:26:34", "team=data", "exec-" + "x" * 28]


def render(width: int) -> list[str]:
    console = Console(file=io.StringIO(), width=width)
    console.print(fitted_table(console, COLUMNS, [ROW]))
    return console.file.getvalue().splitlines()  # type: ignore[attr-defined]


def test_a_table_fits_80_columns_by_dropping_the_least_needed_and_keeps_ids_whole() -> None:
    lines = render(80)
    assert all(len(line) <= 80 for line in lines)
    assert "tags" not in lines[0] and "created" in lines[0]
    assert any(ROW[-1] in line for line in lines)


def test_a_wide_terminal_shows_every_column() -> None:
    assert all(header in render(160)[0] for header in ("phase", "script", "created", "tags"))


def test_a_very_narrow_terminal_wraps_what_must_stay_and_still_keeps_ids_whole() -> None:
    lines = render(50)
    assert any(ROW[-1] in line for line in lines)
    assert "created" not in lines[0]


def progress(parallel: int, paused: bool) -> BatchProgress:
    return BatchProgress(
        batch_id="batch-x",
        total=4,
        queued=2,
        running=1,
        succeeded=1,
        failed=0,
        parallel=parallel,
        paused=paused,
    )


def test_the_bar_follows_set_parallel_and_its_eta_stops_while_paused() -> None:
    view = BatchView(live=True, quiet=False)
    with view:
        view.progress(progress(2, paused=False))
        view.progress(progress(5, paused=True))
        assert view._bar is not None
        out = Console(file=io.StringIO(), width=80)
        for renderable in view._bar.get_renderables():
            out.print(renderable)
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert "parallel 5" in text and "parallel 2" not in text
    assert "eta paused" in text and "paused" in text.splitlines()[-1]
