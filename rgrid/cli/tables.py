"""Tables that fit the terminal (80 columns included): the least needed columns are
dropped first, long text wraps, and ids are never cut (they are copied from here)."""

from __future__ import annotations

from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

GAP = 3  # between columns: padding (0, 1) on each side and a blank separator
KEEP = 3  # columns of this priority or above wrap rather than go


@dataclass(frozen=True)
class Column:
    """A table column: what it is called, how much it matters, whether it may wrap."""

    header: str
    priority: int = 1  # 0 drops first; KEEP and above never drop (they wrap)
    whole: bool = False  # an id: never cut, never wrapped, never dropped
    justify: str = "left"


def fitted_table(
    console: Console,
    columns: list[Column],
    rows: list[list[str]],
    title: str | None = None,
) -> Table:
    """A table of `rows` (rich markup allowed in cells) that fits `console`'s width."""
    natural = [_width(column.header) for column in columns]
    for row in rows:
        for i, cell in enumerate(row):
            natural[i] = max(natural[i], _width(cell))
    kept = list(range(len(columns)))
    droppable = sorted(
        (i for i, c in enumerate(columns) if c.priority < KEEP and not c.whole),
        key=lambda i: (columns[i].priority, -i),
    )
    while _total([natural[i] for i in kept]) > console.width and droppable:
        kept.remove(droppable.pop(0))
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False, title=title)
    for i in kept:
        column = columns[i]
        table.add_column(
            column.header,
            no_wrap=column.whole,
            min_width=natural[i] if column.whole else None,
            overflow="fold",
            justify=column.justify,  # type: ignore[arg-type]
        )
    for row in rows:
        table.add_row(*(row[i] for i in kept))
    return table


def _width(cell: str) -> int:
    return max((len(line) for line in Text.from_markup(cell).plain.splitlines()), default=0)


def _total(widths: list[int]) -> int:
    return sum(widths) + GAP * max(len(widths) - 1, 0)
