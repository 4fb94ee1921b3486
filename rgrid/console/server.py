"""Serving the console: bind the port first (a taken port is one clear line), print the
URL with its token, then run uvicorn on that socket until Ctrl-C."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import webbrowser
from collections.abc import Callable

import uvicorn

from rgrid.client.session import Session
from rgrid.console.app import create_app
from rgrid.console.security import Access
from rgrid.console.web import ConsoleState
from rgrid.errors import UserInputError


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or one line saying the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserInputError(
            f"cannot listen on {host}:{port} ({exc.strerror})", "pick another with --port"
        ) from exc
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(
    session: Session,
    access: Access,
    host: str,
    port: int,
    temporal_ui: str | None,
    announce: Callable[[str], None],
    open_browser: bool = False,
) -> None:
    """Run the console until interrupted."""
    if access.proxy_header and not is_loopback(host):
        raise UserInputError(
            "--proxy-header trusts a header any client can send",
            "listen on loopback (the default) behind the reverse proxy that sets it",
        )
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    url = access.login_url(f"http://{shown_host}:{bound}")
    app = create_app(ConsoleState(session=session, access=access, temporal_ui=temporal_ui))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    announce(url)
    if open_browser:
        webbrowser.open(url)
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        sock.close()
