"""A loopback HTTP endpoint that counts requests by path: how a test's scripts report each
run. It reaches them in any runtime that has the network (a sandboxed process or a
container), where a file outside the work dir would not."""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class RunCounter:
    """Counts GET /<name> requests; `url` is what a script calls."""

    def __init__(self) -> None:
        counts: Counter[str] = Counter()
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with lock:
                    counts[self.path.strip("/")] += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self._counts, self._lock = counts, lock
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def count(self, name: str | None = None) -> int:
        """Requests for one name, or for all."""
        with self._lock:
            return self._counts[name] if name is not None else sum(self._counts.values())

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
