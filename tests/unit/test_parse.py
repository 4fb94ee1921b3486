from __future__ import annotations

import pytest

from rgrid.cli.output import format_cost
from rgrid.client.parse import parse_duration, parse_memory_mb, parse_pairs
from rgrid.errors import UserInputError


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("45s", 45), ("10m", 600), ("1h30m", 5400), ("2h", 7200)]
)
def test_durations_in_seconds_or_units(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "0", "0s", "10x", "m", "-5", "1.5h"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(UserInputError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "mb"), [("512", 512), ("512m", 512), ("2g", 2048), ("1GiB", 1024)]
)
def test_memory_sizes(text: str, mb: int) -> None:
    assert parse_memory_mb(text) == mb


@pytest.mark.parametrize("text", ["lots", "0", "1.5g", "-1g"])
def test_bad_memory_sizes_are_refused(text: str) -> None:
    with pytest.raises(UserInputError):
        parse_memory_mb(text)


def test_env_pairs_keep_equals_signs_in_values() -> None:
    assert parse_pairs(["A=1", "URL=x=y"], "--env", env_keys=True) == {"A": "1", "URL": "x=y"}


@pytest.mark.parametrize("item", ["NOEQUALS", "=x", "1BAD=x", "BAD-KEY=x"])
def test_env_keys_must_be_identifiers(item: str) -> None:
    with pytest.raises(UserInputError, match="bad --env value"):
        parse_pairs([item], "--env", env_keys=True)


def test_tags_allow_any_non_empty_key() -> None:
    assert parse_pairs(["team.name=geo"], "--metadata") == {"team.name": "geo"}


@pytest.mark.parametrize(
    ("microns", "shown"),
    [(0, "€0.00"), (1234, "€0.001234"), (2_500_000, "€2.50"), (1_000_001, "€1.000001")],
)
def test_costs_are_shown_exactly_to_the_micron(microns: int, shown: str) -> None:
    assert format_cost(microns) == shown
