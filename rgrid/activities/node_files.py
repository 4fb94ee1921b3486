"""A lease's files on its node: the script and inputs staged into its work dir, and the
files the script left there collected as outputs. Used by the node's activities."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

from rgrid.infra.storage.base import Storage, cas_key, output_prefix, safe_relative, sha256_file
from rgrid.models.execution import FileRef, OutputFile
from rgrid.models.node import CollectOutputsResult


async def stage(storage: Storage, work: Path, refs: list[FileRef]) -> None:
    """Fetch each file by its content hash into the work dir."""
    await asyncio.gather(*(_stage_one(storage, work, ref) for ref in refs))


async def _stage_one(storage: Storage, work: Path, ref: FileRef) -> None:
    dest = work / safe_relative(ref.name)
    await storage.get_file(cas_key(ref.sha256), dest, sha256=ref.sha256)
    if ref.executable:
        dest.chmod(dest.stat().st_mode | stat.S_IXUSR)


async def collect(
    storage: Storage, work: Path, execution_id: str, staged: dict[str, str]
) -> CollectOutputsResult:
    """Upload every regular file in the work dir that is not a staged file unchanged
    (`staged`: name -> sha256)."""
    result = CollectOutputsResult()
    uploads: list[tuple[str, Path]] = []  # made into coroutines only once all are known
    for path, rel in walk_regular_files(work, result.skipped):
        digest = await asyncio.to_thread(sha256_file, path)
        if staged.get(rel) == digest:
            continue  # an input or the script, unchanged
        key = output_prefix(execution_id) + rel
        uploads.append((key, path))
        result.outputs.append(OutputFile(path=rel, size=path.stat().st_size, sha256=digest))
    await asyncio.gather(*(storage.put_file(key, path) for key, path in uploads))
    return result


def walk_regular_files(root: Path, skipped: list[str]) -> list[tuple[Path, str]]:
    """Regular files with one link under root as (path, posix relpath); symlinks, hard
    links (a name for a file outside the run, perhaps) and specials go to skipped."""
    found: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for name in list(dirnames):
            if (base / name).is_symlink():
                dirnames.remove(name)
                skipped.append((base / name).relative_to(root).as_posix())
        for name in filenames:
            path = base / name
            rel = path.relative_to(root).as_posix()
            info = path.lstat()
            if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
                found.append((path, rel))
            else:
                skipped.append(rel)
    return sorted(found, key=lambda item: item[1])
