"""`rgrid dev start|status|stop`: the embedded stack, explicitly."""

from __future__ import annotations

import typer

from rgrid.cli.common import settings
from rgrid.cli.output import err, out
from rgrid.client.stack import read_stack, start_stack, stop_stack
from rgrid.paths import command_server_socket

app = typer.Typer(help="The embedded stack: Temporal dev server, control worker, local nodes.")


@app.command()
def start() -> None:
    """Start the embedded stack in the background (a no-op if it runs)."""
    config = settings()
    info = read_stack(config)
    if info is None:
        with err.status("starting the embedded stack…"):
            info = start_stack(config)
    out.print(f"Temporal  {info.address}")
    out.print(f"Web UI    {info.ui_url}")
    out.print(f"nodes     {', '.join(info.nodes)}")
    out.print(f"state     {config.dev_dir}")


@app.command()
def status() -> None:
    """Say whether the embedded stack runs, and where."""
    config = settings()
    info = read_stack(config)
    if info is None:
        out.print("not running: `rgrid dev start` starts it")
        raise typer.Exit(1)
    out.print(f"running (pid {info.pid}); Temporal {info.address}; Web UI {info.ui_url}")
    ready = command_server_socket(config.home).exists()
    out.print(f"command server {'ready' if ready else 'not running'}")


@app.command()
def stop() -> None:
    """Stop the embedded stack and its node agents."""
    if stop_stack(settings()):
        out.print("stopped")
    else:
        out.print("not running")
