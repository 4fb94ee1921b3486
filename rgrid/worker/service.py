"""What every rgrid service process shares: a stop event set by SIGTERM/SIGINT, a
Temporal connection that waits for the server instead of dying, private files, and a
tiny HTTP health endpoint a supervisor (systemd, `rgrid dev`, a load balancer) probes."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog

from rgrid.config import Settings
from rgrid.errors import ServiceUnavailableError

# aiohttp and temporalio load where they are used: the embedded stack's supervisor
# starts its children before it needs either.
if TYPE_CHECKING:
    from aiohttp import web
    from temporalio.client import Client

log = structlog.get_logger()

CONNECT_BACKOFF_MAX_S = 10.0


def private_umask() -> None:
    """Everything this process creates (databases, stored files, logs) is the user's alone."""
    os.umask(0o077)


def stop_event() -> asyncio.Event:
    """An event set on SIGTERM or SIGINT: the service then drains and exits."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def connect_until_up(settings: Settings, stop: asyncio.Event) -> Client | None:
    """Connect to Temporal, retrying with backoff (and saying so in the log) while it is
    away; None if told to stop first."""
    from rgrid.infra.temporal import connect

    delay = 0.5
    while not stop.is_set():
        try:
            return await connect(settings, timeout_s=5)
        except ServiceUnavailableError as exc:
            log.warning("temporal_unreachable", error=exc.one_line(), retry_in_s=delay)
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except TimeoutError:
            pass
        delay = min(delay * 2, CONNECT_BACKOFF_MAX_S)
    return None


async def temporal_answers(client: Client) -> bool:
    """True when the Temporal frontend answers a health check within 2 s."""
    try:
        async with asyncio.timeout(2):
            return await client.service_client.check_health()
    except Exception:  # any failure to answer is "unhealthy", never a crash of the probe
        return False


async def serve_health(
    port: int, healthy: Callable[[], Awaitable[bool]], host: str = "127.0.0.1"
) -> web.AppRunner:
    """GET /healthz (or /): 200 "ok" while `healthy()` says so, else 503."""
    from aiohttp import web

    async def handle(_: web.Request) -> web.Response:
        if await healthy():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="unhealthy\n")

    app = web.Application()
    app.router.add_get("/", handle)
    app.router.add_get("/healthz", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("health_endpoint", url=f"http://{host}:{port}/healthz")
    return runner
