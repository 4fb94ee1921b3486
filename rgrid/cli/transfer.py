"""Progress bars for large uploads and downloads, on stderr when it is a terminal."""

from __future__ import annotations

import threading

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from rgrid.cli.output import err
from rgrid.infra.storage.base import Progress as Advance

# Smaller files come and go faster than a bar could be read.
LARGE_BYTES = 8 * 1024 * 1024


class TransferBars:
    """A bar per large file; the display starts with the first one and ends on close()."""

    def __init__(self, threshold: int = LARGE_BYTES) -> None:
        self._threshold = threshold
        self._bars: Progress | None = None
        self._lock = threading.Lock()  # callbacks may come from transfer threads

    def __call__(self, name: str, size: int) -> Advance | None:
        if size < self._threshold:
            return None
        with self._lock:
            if self._bars is None:
                self._bars = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    TimeRemainingColumn(),
                    console=err,
                    transient=True,
                )
                self._bars.start()
            bars = self._bars
            task = bars.add_task(name, total=size)

        def advance(step: int) -> None:
            bars.advance(task, step)

        return advance

    def close(self) -> None:
        with self._lock:
            if self._bars is not None:
                self._bars.stop()
                self._bars = None


def transfer_bars() -> TransferBars | None:
    """Bars when a person watches stderr; nothing in scripts and pipes."""
    return TransferBars() if err.is_terminal else None
