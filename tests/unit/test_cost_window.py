from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rgrid.cli.cost import parse_when
from rgrid.errors import UserInputError

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", NOW - timedelta(days=7)),
        ("36h", NOW - timedelta(hours=36)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T08:30", datetime(2026, 11, 1, 8, 30, tzinfo=UTC)),
        ("2026-11-01T08:30+01:00", datetime(2026, 11, 1, 7, 30, tzinfo=UTC)),
    ],
)
def test_a_window_edge_is_a_span_back_from_now_or_a_date_in_utc(
    text: str, expected: datetime
) -> None:
    assert parse_when(text, NOW) == expected


def test_a_window_edge_that_is_neither_says_what_is_accepted() -> None:
    with pytest.raises(UserInputError, match="bad duration 'soon'"):
        parse_when("soon", NOW)
