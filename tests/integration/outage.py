"""A stack of real processes a test can take down and bring back: its own Temporal dev
server (same port, same database file across restarts), a control worker process, and
agent processes; and a loopback counter the test's scripts report each run to."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from temporalio.client import Client

from rgrid.config import Settings
from rgrid.infra.temporal import connect
from rgrid.worker.dev import dev_server_argv


class RunCounter:
    """Counts GET /<event>/<key> from scripts; GET /gate/<key> answers `open` once the
    test opened that gate (scripts wait on it, so a fault lands while they run)."""

    def __init__(self) -> None:
        self.events: Counter[tuple[str, str]] = Counter()
        self.gates: set[str] = set()
        self.changed = threading.Condition()
        counter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                event, _, key = self.path.strip("/").partition("/")
                with counter.changed:
                    if event == "gate":
                        body = b"open" if key in counter.gates else b"shut"
                    else:
                        counter.events[(event, key)] += 1
                        counter.changed.notify_all()
                        body = b"ok"
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def count(self, event: str, key: str = "") -> int:
        with self.changed:
            return self.events[(event, key)]

    def open_gate(self, key: str = "") -> None:
        with self.changed:
            self.gates.add(key)

    async def wait_for(self, event: str, key: str = "", n: int = 1, timeout: float = 300) -> None:
        """Until `event` was reported n times (an order of events, not a clock)."""
        async with asyncio.timeout(timeout):
            while self.count(event, key) < n:
                await asyncio.sleep(0.05)

    def close(self) -> None:
        self._server.shutdown()


SCRIPT = """\
import sys, time, urllib.request
base, key = sys.argv[1], sys.argv[2].rsplit("/", 1)[-1] if len(sys.argv) > 2 else ""
get = lambda path: urllib.request.urlopen(f"{base}/{path}/{key}", timeout=10).read()
get("start")
while get("gate") != b"open":
    time.sleep(0.05)
open("result.txt", "w").write(f"done {key}\\n")
get("end")
sys.exit(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
# rgrid: no-cache
"""


class Processes:
    """The stack's processes, each restartable and killable with SIGKILL."""

    def __init__(self, settings: Settings, root: Path) -> None:
        self.settings = settings
        self.root = root
        self.temporal: subprocess.Popen[bytes] | None = None
        self.control: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        """RGRID_* of this stack, for its processes and for a CLI pointed at it."""
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("RGRID_")}
        env.update(
            RGRID_HOME=str(s.home),
            RGRID_CONFIG=os.devnull,
            RGRID_TEMPORAL_ADDRESS=s.effective_temporal_address,
            RGRID_DATABASE_URL=s.effective_database_url,
            RGRID_STORAGE_URL=s.effective_storage_url,
            RGRID_NODE_CLASS=s.node_class,
        )
        return env

    def _log(self, name: str) -> int:
        return os.open(self.root / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    async def start_temporal(self) -> Client:
        """Start (or restart) the dev server on the same port and database file."""
        self.settings.dev_dir.mkdir(parents=True, exist_ok=True)
        log = self._log("temporal")
        self.temporal = subprocess.Popen(
            dev_server_argv(self.settings), stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        os.close(log)
        async with asyncio.timeout(60):
            while True:
                with contextlib.suppress(Exception):
                    return await connect(self.settings, timeout_s=2)
                await asyncio.sleep(0.2)

    def start_control(self) -> None:
        log = self._log("control")
        self.control = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.control_process"],
            env=self.env(),
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            cwd=Path(__file__).parent.parent.parent,
        )
        os.close(log)

    @staticmethod
    def kill(proc: subprocess.Popen[bytes] | None) -> None:
        """SIGKILL, as a crash would: nothing gets to clean up."""
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    def stop_all(self) -> None:
        for proc in (self.control, self.temporal):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.kill(proc)


@contextlib.contextmanager
def run_counter() -> Iterator[RunCounter]:
    counter = RunCounter()
    try:
        yield counter
    finally:
        counter.close()
