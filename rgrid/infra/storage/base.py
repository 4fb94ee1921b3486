"""Object storage: the Protocol every backend implements, and the key layout.

Keys are '/'-separated and relative. Inputs are content-addressed (`cas/<sha256>`) so a
file is stored once whatever its name; logs and outputs live under the execution's id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Protocol

from pydantic import BaseModel

from rgrid.errors import StorageError, UnsafePathError

CHUNK = 1024 * 1024
# A stored input is marked used again once it is older than this (see Storage.keep).
KEEP_REFRESH = timedelta(days=1)

# Called with the bytes moved since the last call (from any thread).
Progress = Callable[[int], None]


class Track(Protocol):
    """What shows transfers to a user: a Progress per file, closed when all are done."""

    def __call__(self, name: str, size: int) -> Progress | None: ...
    def close(self) -> None: ...


class ObjectInfo(BaseModel):
    """One stored object: its key and size in bytes."""

    key: str
    size: int


class Storage(Protocol):
    """What rgrid needs of object storage."""

    async def exists(self, key: str) -> bool: ...
    async def keep(self, key: str) -> bool:
        """Whether `key` is stored; if so it counts as used now, so an expiry that runs
        from an object's last write runs from its last use (refreshed at most daily)."""
        ...

    async def put_file(self, key: str, path: Path, progress: Progress | None = None) -> None: ...
    async def put_bytes(self, key: str, data: bytes) -> None: ...
    async def get_file(
        self,
        key: str,
        dest: Path,
        progress: Progress | None = None,
        sha256: str | None = None,
    ) -> None:
        """Download to `dest` atomically; with `sha256`, a copy that does not match is
        refused (StorageError) and `dest` is left as it was."""
        ...

    async def get_bytes(self, key: str) -> bytes: ...
    async def list(self, prefix: str) -> list[ObjectInfo]: ...
    async def aclose(self) -> None:
        """Release connections; the storage may be used again afterwards."""
        ...


def cas_key(sha256: str) -> str:
    """Key of a content-addressed input."""
    return f"cas/{sha256[:2]}/{sha256}"


def log_prefix(execution_id: str) -> str:
    """Prefix under which an execution's log chunks are stored."""
    return f"logs/{execution_id}/"


def output_prefix(execution_id: str) -> str:
    """Prefix under which an execution's outputs are stored."""
    return f"outputs/{execution_id}/"


def safe_relative(name: str) -> PurePosixPath:
    """`name` as a relative path that cannot leave its directory, or UnsafePathError."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\\" in name:
        raise UnsafePathError(f"unsafe path {name!r}", "paths must be relative and stay inside")
    return path


def check_sha256(path: Path, expected: str | None, key: str) -> None:
    """StorageError unless the file's sha256 is `expected` (None: no check)."""
    if expected is not None and (actual := sha256_file(path)) != expected:
        raise StorageError(
            f"stored object {key!r} arrived corrupted (sha256 {actual[:12]}…, "
            f"expected {expected[:12]}…)",
            "retry; if it persists the stored copy is damaged",
        )


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()
