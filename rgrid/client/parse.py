"""Parsing of user-typed values: KEY=VALUE pairs and durations."""

from __future__ import annotations

import re

from rgrid.errors import UserInputError

_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_pairs(items: list[str], option: str, env_keys: bool = False) -> dict[str, str]:
    """`KEY=VALUE` strings as a dict; UserInputError naming the bad one."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        valid_key = _ENV_KEY.fullmatch(key) if env_keys else key.strip()
        if not sep or not valid_key:
            raise UserInputError(
                f"bad {option} value {item!r}", f"write it as KEY=VALUE, e.g. {option} LEVEL=debug"
            )
        pairs[key] = value
    return pairs


def parse_duration(text: str) -> int:
    """Seconds in '90', '90s', '10m', '1h30m', '30d'; UserInputError otherwise."""
    text = text.strip().lower()
    if text.isdigit():
        seconds = int(text)
    else:
        match = _DURATION.fullmatch(text)
        if not text or not match or not any(match.groups()):
            raise UserInputError(
                f"bad duration {text!r}", "use seconds or units, e.g. 90, 45s, 10m, 1h30m, 7d"
            )
        days, hours, minutes, secs = (int(g or 0) for g in match.groups())
        seconds = days * 86400 + hours * 3600 + minutes * 60 + secs
    if seconds <= 0:
        raise UserInputError(f"bad duration {text!r}", "it must be longer than 0 seconds")
    return seconds


_SIZE = re.compile(r"(\d+)\s*([kmg]i?b?|)", re.IGNORECASE)


def parse_memory_mb(text: str) -> int:
    """Mebibytes in '512', '512m' or '2g'; UserInputError otherwise."""
    match = _SIZE.fullmatch(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise UserInputError(f"bad memory size {text!r}", "use MiB or units, e.g. 512, 512m, 2g")
    number, unit = int(match.group(1)), match.group(2).lower()[:1]
    return {"": number, "m": number, "g": number * 1024, "k": max(number // 1024, 1)}[unit]
