"""Object storage: a Protocol, the local-directory implementation, and the key layout.

Keys are '/'-separated and relative. Inputs are content-addressed (`cas/<sha256>`) so a
file is stored once whatever its name; logs and outputs live under the execution's id.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import unquote, urlparse

from pydantic import BaseModel

from rgrid.errors import ConfigError, NotFoundError, StorageError, UnsafePathError

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


class LocalStorage:
    """Storage in a directory; writes are atomic (temp file, then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / safe_relative(key)

    async def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    async def keep(self, key: str) -> bool:
        return await asyncio.to_thread(self._keep, self._path(key))

    @staticmethod
    def _keep(path: Path) -> bool:
        try:
            if time.time() - path.stat().st_mtime > KEEP_REFRESH.total_seconds():
                os.utime(path)
        except FileNotFoundError:
            return False
        return path.is_file()

    async def put_file(self, key: str, path: Path, progress: Progress | None = None) -> None:
        await asyncio.to_thread(self._atomic_copy, path, self._path(key), progress)

    async def put_bytes(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._atomic_write, self._path(key), data)

    async def get_file(
        self,
        key: str,
        dest: Path,
        progress: Progress | None = None,
        sha256: str | None = None,
    ) -> None:
        source = self._path(key)
        if not source.is_file():
            raise NotFoundError(f"no stored object {key!r}", "it may have expired")
        await asyncio.to_thread(self._atomic_copy, source, dest, progress, sha256, key)

    async def get_bytes(self, key: str) -> bytes:
        source = self._path(key)
        if not source.is_file():
            raise NotFoundError(f"no stored object {key!r}", "it may have expired")
        return await asyncio.to_thread(source.read_bytes)

    async def list(self, prefix: str) -> list[ObjectInfo]:
        return await asyncio.to_thread(self._list, prefix)

    async def aclose(self) -> None:
        return None  # holds nothing open

    def _list(self, prefix: str) -> builtins.list[ObjectInfo]:
        base = self.root / safe_relative(prefix.rstrip("/") or ".")
        if not base.is_dir():
            return []
        found = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                full = Path(dirpath) / name
                found.append(
                    ObjectInfo(key=full.relative_to(self.root).as_posix(), size=full.stat().st_size)
                )
        return sorted(found, key=lambda o: o.key)

    @staticmethod
    def _atomic_write(dest: Path, data: bytes) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, dest)

    @staticmethod
    def _atomic_copy(
        source: Path,
        dest: Path,
        progress: Progress | None = None,
        sha256: str | None = None,
        key: str = "",
    ) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
        try:
            digest = hashlib.sha256()
            with source.open("rb") as src, os.fdopen(fd, "wb") as out:
                while block := src.read(CHUNK):
                    out.write(block)
                    digest.update(block)
                    if progress is not None:
                        progress(len(block))
            if sha256 is not None and digest.hexdigest() != sha256:
                check_sha256(Path(tmp), sha256, key)  # raises with both hashes
            os.replace(tmp, dest)
        finally:
            Path(tmp).unlink(missing_ok=True)


def open_storage(url: str) -> Storage:
    """The Storage for a URL: file:///dir or s3://bucket/prefix."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalStorage(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        # Imported here so local storage never loads aioboto3.
        from rgrid.infra.storage_s3 import S3Storage

        return S3Storage.from_url(url)
    raise ConfigError(
        f"unsupported storage URL {url!r}", "use file:///path/to/dir or s3://bucket/prefix"
    )
