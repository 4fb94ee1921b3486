"""Which command-line arguments are files, and the names they are staged under."""

from __future__ import annotations

import os
import re
from pathlib import Path

from rgrid.errors import UserInputError

# An argument "looks like a path" when it has a separator or ends in a file extension;
# such an argument must exist, so a typo fails here instead of inside the script.
_EXTENSION = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,7}$")


def looks_like_path(arg: str) -> bool:
    """True for arguments a user most likely meant as a file."""
    if arg.startswith("-") or "://" in arg:
        return False
    try:
        float(arg)
        return False
    except ValueError:
        pass
    return "/" in arg or bool(_EXTENSION.search(arg))


def staged_name(path: Path, cwd: Path) -> str:
    """Where a local file appears in the work dir: its relative path if it lies under the
    current directory, else its bare name."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(cwd.resolve()).as_posix()
    except ValueError:
        return path.name


def check_readable(path: Path, what: str) -> None:
    if not path.exists():
        raise UserInputError(f"{what} not found: {path}", "check the path")
    if path.is_dir():
        raise UserInputError(f"{what} is a directory: {path}", "pass a file")
    if not os.access(path, os.R_OK):
        raise UserInputError(f"{what} is not readable: {path}", "check its permissions")


def add_staged(files: dict[str, Path], name: str, path: Path) -> None:
    """Add a file to be staged as `name`; two different files under one name are refused."""
    existing = files.get(name)
    if existing is not None and existing.resolve() != path.resolve():
        raise UserInputError(
            f"two inputs would both be staged as {name!r}: {existing} and {path}",
            "rename one of them",
        )
    files[name] = path
