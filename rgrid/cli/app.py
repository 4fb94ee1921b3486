"""The `rgrid` command: every command group registered here, errors caught at one edge."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import Annotated

import typer

from rgrid import __version__, logs
from rgrid.cli import admin, cache, config_cmd, cost, dev, executions, init, nodes, run
from rgrid.cli.console import console
from rgrid.cli.output import EXIT_CANCELLED, EXIT_RGRID_ERROR, err, out
from rgrid.errors import RgridError

app = typer.Typer(
    name="rgrid",
    help="Run scripts on rented compute: isolated, durable, priced to the micro-euro.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _global(
    profile: Annotated[
        str | None,
        typer.Option(envvar="RGRID_PROFILE", help="Config profile to use (see `rgrid init`)."),
    ] = None,
) -> None:
    if profile:
        os.environ["RGRID_PROFILE"] = profile


# Options after the script are rgrid's when rgrid knows them, else the script's;
# everything after `--` is the script's.
app.command(context_settings={"ignore_unknown_options": True})(run.run)
app.command()(executions.status)
app.command()(executions.logs)
app.command("list")(executions.list_executions)
app.command()(executions.cancel)
app.command()(executions.retry)
app.command()(executions.download)
app.command()(executions.outputs)
app.command()(config_cmd.config)
app.command()(init.init)
app.command()(cost.estimate)
app.command()(console)
app.add_typer(cache.app, name="cache")
app.add_typer(cost.app, name="cost")
app.add_typer(dev.app, name="dev")
app.add_typer(admin.app, name="admin")
app.add_typer(nodes.app, name="nodes")


@app.command()
def version() -> None:
    """Print rgrid's version."""
    out.print(f"rgrid {__version__}")


def main() -> None:
    """Entry point: run the app; an RgridError becomes one line on stderr, never a traceback."""
    code = run_command()
    # Skip interpreter finalization: temporalio's Rust runtime threads can abort a
    # short-lived client process there (temporalio/sdk-python#300). Nothing is pending.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def click_command() -> Callable[[], object]:
    """The app as the click command typer builds (about 30 ms: the command server builds
    it once, before it forks)."""
    return typer.main.get_command(app)


def run_command(command: Callable[[], object] | None = None) -> int:
    """Run the command line in sys.argv; its exit code."""
    debug = os.environ.get("RGRID_DEBUG") == "1"
    logs.configure(json=False, level=10 if debug else 30)
    try:
        (command or click_command())()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        err.print(str(exc.code))
        return 1
    except RgridError as exc:
        if debug:
            traceback.print_exc()
        err.print(f"[red]error:[/red] {exc.one_line()}", markup=True, highlight=False)
        return EXIT_RGRID_ERROR
    except KeyboardInterrupt:
        err.print("interrupted")
        return EXIT_CANCELLED
    except Exception as exc:  # the promise: never a traceback unless asked for
        if debug:
            traceback.print_exc()
        first_line = (str(exc).strip().splitlines() or [""])[0]
        err.print(
            f"[red]error:[/red] unexpected {type(exc).__name__}: {first_line}: "
            "rerun with RGRID_DEBUG=1 for details"
        )
        return EXIT_RGRID_ERROR
    return 0
