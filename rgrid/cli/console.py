"""`rgrid console`: the web console, on loopback with a token by default."""

from __future__ import annotations

from typing import Annotated

import typer

from rgrid.cli.common import ensure_stack_for, settings
from rgrid.cli.output import err, out


def console(
    port: Annotated[
        int, typer.Option("--port", "-p", envvar="RGRID_CONSOLE_PORT", help="Port to listen on.")
    ] = 8765,
    host: Annotated[
        str,
        typer.Option(
            envvar="RGRID_CONSOLE_HOST",
            help="Address to listen on; loopback unless a team serves it to others.",
        ),
    ] = "127.0.0.1",
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the console in a web browser.")
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="RGRID_CONSOLE_TOKEN",
            help="Team mode: a fixed login token (default: a new one at every start).",
            show_default=False,
        ),
    ] = None,
    proxy_header: Annotated[
        str | None,
        typer.Option(
            envvar="RGRID_CONSOLE_PROXY_HEADER",
            help="Team mode: trust this header (e.g. X-Forwarded-User) set by a reverse proxy.",
        ),
    ] = None,
    temporal_ui: Annotated[
        str | None,
        typer.Option(
            envvar="RGRID_TEMPORAL_UI_URL",
            help="The Temporal Web UI's address (default: the embedded server's).",
        ),
    ] = None,
) -> None:
    """Serve the web console: executions, batches, logs, outputs, costs and nodes."""
    from rgrid.client.session import Session
    from rgrid.console.security import Access
    from rgrid.console.server import is_loopback, serve

    config = settings()
    if config.embedded:  # started here, before serving, so no request waits on it
        ensure_stack_for(config)()
    access = Access(proxy_header=proxy_header) if token is None else Access(token, proxy_header)
    if not is_loopback(host):
        err.print(
            f"[yellow]warning: listening on {host}: anyone who can reach it and has the token "
            "gets in; put it behind a TLS proxy[/yellow]"
        )

    def announce(url: str) -> None:
        err.print("rgrid console: open this URL (it holds the login token); Ctrl-C stops it")
        out.print(url, soft_wrap=True)

    serve(Session(config), access, host, port, temporal_ui, announce, open_browser)
