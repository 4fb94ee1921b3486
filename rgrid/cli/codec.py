"""`rgrid codec-server`: show rgrid's encrypted payloads in a Temporal Web UI."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from rgrid.cli.common import settings
from rgrid.cli.output import err, out
from rgrid.client import codec_server
from rgrid.client.codec_token import codec_endpoint, token_of


def codec_server_command(
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default: the UI's port + 1).")
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: RGRID_DEV_IP).")
    ] = None,
    ui_origin: Annotated[
        list[str] | None,
        typer.Option(help="The Web UI's origin, e.g. https://temporal.example (repeatable)."),
    ] = None,
) -> None:
    """Decode payloads for the Web UI (secrets masked); requires the token it prints."""
    current = settings().model_copy(update={"codec_port": port} if port else {})
    token = token_of(current.home)
    origins = ui_origin or codec_server.ui_origins(current)

    async def serve() -> None:
        runner = await codec_server.start(current, origins=origins, host=host)
        endpoint = codec_endpoint(current, token)
        if host:
            endpoint = endpoint.replace(f"//{current.dev_ip}:", f"//{host}:", 1)
        out.print(endpoint, markup=False)
        err.print(
            "set it as the Web UI's codec endpoint; it answers only "
            + ", ".join(origins)
            + " (Ctrl-C stops it)"
        )
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
