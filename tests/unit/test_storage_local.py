from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rgrid.errors import NotFoundError, StorageError, UnsafePathError
from rgrid.infra.logstore import LogChunkWriter, read_new_records
from rgrid.infra.storage.base import safe_relative, sha256_file
from rgrid.infra.storage.local import LocalStorage


async def test_round_trip_and_listing(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    await storage.put_bytes("a/b/c.txt", b"hello")
    source = tmp_path / "f"
    source.write_bytes(b"x" * 10)
    await storage.put_file("a/d", source)
    assert await storage.exists("a/b/c.txt")
    assert not await storage.exists("a/zz")
    assert [(o.key, o.size) for o in await storage.list("a/")] == [("a/b/c.txt", 5), ("a/d", 10)]
    await storage.get_file("a/d", tmp_path / "out" / "d")
    assert (tmp_path / "out" / "d").read_bytes() == b"x" * 10
    with pytest.raises(NotFoundError):
        await storage.get_bytes("missing")


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../b", "", "a\\b"])
def test_keys_that_escape_are_refused(key: str) -> None:
    with pytest.raises(UnsafePathError):
        safe_relative(key)


async def test_logs_keep_order_streams_and_raw_bytes_across_chunks(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    writer = LogChunkWriter(storage, "exec-1", attempt=1)
    writer.write("out", b"one\n")
    writer.write("err", b"oops \xff\xfe\n")
    await writer.flush()
    writer.write("out", b"two\n")
    await writer.flush()
    seen: set[str] = set()
    records = await read_new_records(storage, "exec-1", seen)
    assert [(r.stream, r.data) for r in records] == [
        ("out", b"one\n"),
        ("err", b"oops \xff\xfe\n"),
        ("out", b"two\n"),
    ]
    assert await read_new_records(storage, "exec-1", seen) == []
    assert writer.last_line("err").startswith("oops")


async def test_a_retried_attempt_does_not_overwrite_earlier_logs(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    for attempt in (1, 2):
        writer = LogChunkWriter(storage, "exec-1", attempt=attempt)
        writer.write("out", f"attempt {attempt}\n".encode())
        await writer.flush()
    records = await read_new_records(storage, "exec-1", set())
    assert [r.data for r in records] == [b"attempt 1\n", b"attempt 2\n"]


async def test_file_transfers_report_progress_and_a_corrupt_copy_is_refused(
    tmp_path: Path,
) -> None:
    storage = LocalStorage(tmp_path / "store")
    source = tmp_path / "big"
    source.write_bytes(b"y" * (3 * 1024 * 1024 + 5))
    sent: list[int] = []
    received: list[int] = []
    await storage.put_file("cas/big", source, progress=sent.append)
    dest = tmp_path / "out" / "big"
    await storage.get_file("cas/big", dest, progress=received.append, sha256=sha256_file(source))
    assert sum(sent) == sum(received) == source.stat().st_size and len(sent) == 4

    dest.write_bytes(b"previous")
    with pytest.raises(StorageError, match="corrupted"):
        await storage.get_file("cas/big", dest, sha256="0" * 64)
    assert dest.read_bytes() == b"previous"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["big"]


async def test_keep_marks_an_old_object_used_and_says_whether_it_is_stored(
    tmp_path: Path,
) -> None:
    storage = LocalStorage(tmp_path / "store")
    await storage.put_bytes("cas/aa/old", b"x")
    path = tmp_path / "store" / "cas" / "aa" / "old"
    two_days_ago = time.time() - 2 * 86400
    os.utime(path, (two_days_ago, two_days_ago))

    assert await storage.keep("cas/aa/old")
    assert not await storage.keep("cas/aa/absent")
    assert path.stat().st_mtime > time.time() - 60
