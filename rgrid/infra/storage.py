"""Object storage: a Protocol, the local-directory implementation, and the key layout.

Keys are '/'-separated and relative. Inputs are content-addressed (`cas/<sha256>`) so a
file is stored once whatever its name; logs and outputs live under the execution's id.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import unquote, urlparse

from pydantic import BaseModel

from rgrid.errors import ConfigError, NotFoundError, UnsafePathError

CHUNK = 1024 * 1024


class ObjectInfo(BaseModel):
    """One stored object: its key and size in bytes."""

    key: str
    size: int


class Storage(Protocol):
    """What rgrid needs of object storage."""

    async def exists(self, key: str) -> bool: ...
    async def put_file(self, key: str, path: Path) -> None: ...
    async def put_bytes(self, key: str, data: bytes) -> None: ...
    async def get_file(self, key: str, dest: Path) -> None: ...
    async def get_bytes(self, key: str) -> bytes: ...
    async def list(self, prefix: str) -> list[ObjectInfo]: ...


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

    async def put_file(self, key: str, path: Path) -> None:
        await asyncio.to_thread(self._atomic_copy, path, self._path(key))

    async def put_bytes(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._atomic_write, self._path(key), data)

    async def get_file(self, key: str, dest: Path) -> None:
        source = self._path(key)
        if not source.is_file():
            raise NotFoundError(f"no stored object {key!r}", "it may have expired")
        await asyncio.to_thread(self._atomic_copy, source, dest)

    async def get_bytes(self, key: str) -> bytes:
        source = self._path(key)
        if not source.is_file():
            raise NotFoundError(f"no stored object {key!r}", "it may have expired")
        return await asyncio.to_thread(source.read_bytes)

    async def list(self, prefix: str) -> list[ObjectInfo]:
        return await asyncio.to_thread(self._list, prefix)

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
    def _atomic_copy(source: Path, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
        os.close(fd)
        shutil.copyfile(source, tmp)
        os.replace(tmp, dest)


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
