"""`rgrid dev start|status|stop`: the embedded stack, explicitly."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rgrid.cli.common import settings
from rgrid.cli.output import JsonOption, err, out, print_json
from rgrid.client.stack import read_children, read_stack, start_stack, stop_stack
from rgrid.errors import UserInputError
from rgrid.models.stack import ChildState, ChildStatus

app = typer.Typer(help="The embedded stack: Temporal dev server, control worker, local nodes.")

# In a checkout (an editable install), the repository root holds tests/ beside rgrid/.
CHECKOUT = Path(__file__).resolve().parents[2]


def standin_available() -> bool:
    """True when rgrid runs from a checkout that has the tests' stand-ins."""
    return (CHECKOUT / "tests" / "standins" / "hetzner.py").is_file()


@app.command()
def start() -> None:
    """Start the embedded stack in the background (a no-op if it runs)."""
    config = settings()
    info = read_stack(config)
    if info is None:
        with err.status("starting the embedded stack…"):
            info = start_stack(
                config,
                # Progress for a person at a terminal; elsewhere an error stays one line.
                on_step=(lambda step, after_s: err.print(f"[dim]  {after_s:4.1f}s {step}[/dim]"))
                if err.is_terminal
                else None,
            )
    out.print(f"Temporal  {info.address}")
    out.print(f"Web UI    {info.ui_url}")
    out.print(f"nodes     {', '.join(info.nodes)}")
    out.print(f"state     {config.dev_dir}")


@app.command()
def status(json_output: JsonOption = False) -> None:
    """Each process of the embedded stack: pid, uptime, restarts, last exit and why;
    for agents, the runtime they use and why. Exits 1 when the stack is not running."""
    config = settings()
    info = read_stack(config)
    record = read_children(config)
    if json_output:
        print_json(
            {
                "running": info is not None,
                "stack": None if info is None else info.model_dump(mode="json"),
                "processes": []
                if record is None
                else [c.model_dump(mode="json") for c in record.children],
            }
        )
        raise typer.Exit(0 if info is not None else 1)
    if info is None:
        out.print("not running: `rgrid dev start` starts it")
        raise typer.Exit(1)
    running = "running" if info.ready else "starting"
    out.print(f"{running} (pid {info.pid}); Temporal {info.address}; Web UI {info.ui_url}")
    if record is not None:
        out.print(children_table(record.children))
        for child in record.children:
            if child.last_exit_reason and child.state is not ChildState.RUNNING:
                out.print(f"{child.name} last said: {child.last_exit_reason} ({child.log})")
            if child.agent is not None:
                out.print(f"{child.name} runtime {child.agent.runtime}: {child.agent.reason}")


def children_table(children: list[ChildStatus]) -> Table:
    """One row per supervised process, in 80 columns."""
    table = Table(box=None, pad_edge=False)
    for column in ("process", "state", "pid", "uptime", "restarts", "last exit"):
        table.add_column(column)
    now = time.time()
    for child in children:
        state = (
            child.state.value
            if child.ready or child.state is not ChildState.RUNNING
            else ("starting")
        )
        uptime = (
            ""
            if child.started_at is None or child.process is None
            else (format_duration(now - child.started_at))
        )
        table.add_row(
            child.name,
            state,
            "" if child.process is None else str(child.process.pid),
            uptime,
            str(child.restarts),
            "" if child.last_exit_code is None else str(child.last_exit_code),
        )
    return table


def format_duration(seconds: float) -> str:
    """3s, 4m05s, 2h07m."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@app.command()
def stop() -> None:
    """Stop the embedded stack and its node agents."""
    if stop_stack(settings()):
        out.print("stopped")
    else:
        out.print("not running")


@app.command("hetzner-standin", hidden=not standin_available())
def hetzner_standin(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 4000,
    token: Annotated[
        str | None, typer.Option(envvar="HCLOUD_TOKEN", help="Token clients must send.")
    ] = None,
    boot_delay: Annotated[
        float, typer.Option(help="Seconds a server takes to boot (simulated).")
    ] = 0.0,
) -> None:
    """Serve the tests' stand-in of the Hetzner Cloud API (only in a checkout of rgrid):
    point rgrid at it with RGRID_HCLOUD_ENDPOINT=http://127.0.0.1:PORT/v1."""
    import asyncio

    if not standin_available():
        raise UserInputError(
            "the Hetzner API stand-in ships with rgrid's tests, not with the package",
            "run this from a checkout of rgrid's repository",
        )
    sys.path.insert(0, str(CHECKOUT))
    from tests.standins.hetzner import run_forever

    root = settings().home / "hetzner-standin"
    out.print(f"Hetzner API stand-in on http://127.0.0.1:{port}/v1; servers under {root}")
    asyncio.run(run_forever(port, root, token, boot_delay))
