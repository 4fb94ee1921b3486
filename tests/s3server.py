"""A local S3 API server for tests: moto's server mode (what aiobotocore's tests use)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import free_port


def moto_server() -> str | None:
    """The moto_server executable, or None when moto[server] is not installed."""
    beside_python = Path(sys.executable).with_name("moto_server")
    return str(beside_python) if beside_python.exists() else shutil.which("moto_server")


@contextlib.contextmanager
def running_moto(binary: str, log_path: Path) -> Iterator[str]:
    """Start moto_server on a free port of 127.0.0.1; yields its endpoint URL."""
    port = free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"moto_server did not start; see {log_path}") from None
                    time.sleep(0.1)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=10)
