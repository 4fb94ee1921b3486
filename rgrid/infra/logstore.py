"""Script logs as numbered chunks in storage, so they can be tailed while the script runs
and read after its node is gone.

A chunk is JSON lines of `{"s": "out"|"err", "d": text}`; bytes that are not UTF-8 survive
the round trip through 'surrogateescape'.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel

from rgrid.infra.codec import MASK
from rgrid.infra.storage.base import Storage, log_prefix

Stream = Literal["out", "err"]
REDACTED = MASK.encode()  # one marker for a hidden secret, in logs and in the Web UI


class LogRecord(BaseModel):
    """One piece of output from one stream, in the order the node saw it."""

    stream: Stream
    data: bytes
    attempt: int = 1  # which try of the execution wrote it (a retry or a new node)


def chunk_key(execution_id: str, attempt: int, seq: int) -> str:
    """Key of a log chunk; the attempt comes first so a retried run never overwrites one."""
    return f"{log_prefix(execution_id)}{attempt:03d}-{seq:08d}.jsonl"


class LogChunkWriter:
    """Buffers output and writes it to storage as the next chunk on flush()."""

    def __init__(
        self, storage: Storage, execution_id: str, attempt: int, redact: Iterable[str] = ()
    ) -> None:
        self._storage = storage
        # Secret values the script may print: stored logs and the tail show REDACTED instead.
        self._redact = sorted({v.encode() for v in redact if v}, key=len, reverse=True)
        self._execution_id = execution_id
        self._attempt = attempt
        self._buffer: list[tuple[Stream, bytes]] = []
        self.next_seq = 0
        self.bytes_written = 0
        self.tail: dict[Stream, bytes] = {"out": b"", "err": b""}

    def write(self, stream: Stream, data: bytes) -> None:
        """Queue output for the next chunk and keep the last 4 KiB of each stream."""
        if not data:
            return
        if self._buffer and self._buffer[-1][0] == stream:
            self._buffer[-1] = (stream, self._buffer[-1][1] + data)
        else:
            self._buffer.append((stream, data))
        self.tail[stream] = (self.tail[stream] + data)[-4096:]

    async def flush(self) -> None:
        """Store what was written since the last flush as one chunk."""
        if not self._buffer:
            return
        lines = [
            json.dumps({"s": s, "d": self._hide(d).decode("utf-8", "surrogateescape")})
            for s, d in self._buffer
        ]
        payload = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
        await self._storage.put_bytes(
            chunk_key(self._execution_id, self._attempt, self.next_seq), payload
        )
        self.bytes_written += sum(len(d) for _, d in self._buffer)
        self._buffer.clear()
        self.next_seq += 1

    def last_line(self, stream: Stream) -> str:
        """The last non-empty line of a stream, for failure summaries."""
        lines = self._hide(self.tail[stream]).decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else ""

    def _hide(self, data: bytes) -> bytes:
        for value in self._redact:
            data = data.replace(value, REDACTED)
        return data


def attempt_of(key: str) -> int:
    """The attempt a chunk key names (see chunk_key)."""
    name = key.rsplit("/", 1)[-1]
    head = name.split("-", 1)[0]
    return int(head) if head.isdigit() else 1


def decode_chunk(payload: bytes, attempt: int = 1) -> list[LogRecord]:
    """Records of one stored chunk."""
    records = []
    for line in payload.decode("utf-8", "surrogatepass").splitlines():
        if line:
            item = json.loads(line)
            records.append(
                LogRecord(
                    stream=item["s"],
                    data=item["d"].encode("utf-8", "surrogateescape"),
                    attempt=attempt,
                )
            )
    return records


async def read_new_records(storage: Storage, execution_id: str, after: set[str]) -> list[LogRecord]:
    """Records from chunks not in `after` (which is updated), in chunk order."""
    records: list[LogRecord] = []
    for info in await storage.list(log_prefix(execution_id)):
        if info.key in after:
            continue
        records.extend(decode_chunk(await storage.get_bytes(info.key), attempt_of(info.key)))
        after.add(info.key)
    return records
