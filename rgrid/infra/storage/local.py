"""Storage in a local directory (the embedded default): writes are atomic."""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import os
import tempfile
import time
from pathlib import Path

from rgrid.errors import NotFoundError
from rgrid.infra.storage.base import (
    CHUNK,
    KEEP_REFRESH,
    ObjectInfo,
    Progress,
    check_sha256,
    safe_relative,
)


class LocalStorage:
    """Storage in a directory; writes are atomic (temp file, then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(mode=0o700, parents=True, exist_ok=True)  # files inside are 0600 (mkstemp)

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
