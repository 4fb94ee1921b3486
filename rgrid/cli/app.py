"""The `rgrid` command: every command group registered here, errors caught at one edge."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import Annotated

import typer
from typer import rich_utils
from typer._click import Command, Context
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperCommand, TyperGroup

from rgrid import __version__, logs
from rgrid.cli.commands import COMMANDS
from rgrid.cli.output import EXIT_CANCELLED, EXIT_RGRID_ERROR, EXIT_UNREACHABLE, err, out
from rgrid.client import stack_launch
from rgrid.errors import ControlPlaneUnreachableError, RgridError


def load_command(name: str) -> Command:
    """The real click command for `name`, its module imported now."""
    import importlib

    module_name, attribute, _ = COMMANDS[name]
    found = getattr(importlib.import_module(f"rgrid.cli.{module_name}"), attribute)
    if isinstance(found, typer.Typer):
        group = typer.main.get_group(found)
        group.name = name
        return group
    single = typer.Typer()
    if name == "run":
        from rgrid.cli.options import RunCommand

        # Options after the script are rgrid's when rgrid knows them, else the script's;
        # everything after `--` is the script's (the rule is RunCommand's).
        single.command(name, cls=RunCommand, context_settings={"ignore_unknown_options": True})(
            found
        )
    else:
        single.command(name)(found)
    return typer.main.get_command(single)


class LazyGroup(TyperGroup):
    """rgrid's top level: commands load on first use; the listing in `rgrid --help` uses
    the one-line helps of COMMANDS instead of loading every command."""

    listing = False

    def list_commands(self, ctx: Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in COMMANDS:
            return None
        if cmd_name not in self.commands:
            if self.listing:
                return TyperCommand(cmd_name, help=COMMANDS[cmd_name][2])
            self.commands[cmd_name] = load_command(cmd_name)
        return self.commands[cmd_name]

    def format_help(self, ctx: Context, formatter: object) -> None:
        self.listing = True
        try:
            super().format_help(ctx, formatter)  # type: ignore[arg-type]
        finally:
            self.listing = False

    def load_all(self) -> None:
        """Every command loaded now (the command server, before it forks)."""
        for name in COMMANDS:
            self.get_command(Context(self), name)


app = typer.Typer(
    name="rgrid",
    help="Run scripts on rented compute: isolated, durable, priced to the micro-euro.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    cls=LazyGroup,
)


def _print_version(value: bool) -> None:
    if value:
        out.print(f"rgrid {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global(
    profile: Annotated[
        str | None,
        typer.Option(envvar="RGRID_PROFILE", help="Config profile to use (see `rgrid init`)."),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", is_eager=True, callback=_print_version, help="Print the version."
        ),
    ] = False,
) -> None:
    if profile:
        os.environ["RGRID_PROFILE"] = profile


def version() -> None:
    """Print rgrid's version."""
    out.print(f"rgrid {__version__}")


def main() -> None:
    """Entry point: run the app; an RgridError becomes one line on stderr, never a traceback."""
    code = run_command()
    stack_launch.end_unclaimed()  # started early for a first run that then needed none
    # Skip interpreter finalization: temporalio's Rust runtime threads can abort a
    # short-lived client process there (temporalio/sdk-python#300). Nothing is pending.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def click_command() -> Callable[..., object]:
    """The app as the click command typer builds (about 30 ms: the command server builds
    it once, before it forks)."""
    return typer.main.get_command(app)


def run_command(command: Callable[..., object] | None = None) -> int:
    """Run the command line in sys.argv; its exit code."""
    debug = os.environ.get("RGRID_DEBUG") == "1"
    logs.configure(json=False, level=10 if debug else 30)
    try:
        # The name in usage lines is the command users type, however this process started.
        # Not standalone: a usage error comes here, to end in one line like any other.
        code = (command or click_command())(prog_name="rgrid", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except NoArgsIsHelpError as exc:  # `rgrid`, `rgrid nodes`: their help, as asked
        rich_utils.rich_format_error(exc)
        return exc.exit_code
    except UsageError as exc:
        where = f"`{exc.ctx.command_path} --help`" if exc.ctx else "`rgrid --help`"
        err.print(f"error: {exc.format_message().rstrip('.')}: see {where}", markup=False)
        return exc.exit_code
    except typer.Abort:
        err.print("aborted")
        return 1
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        err.print(str(exc.code))
        return 1
    except RgridError as exc:
        if debug:
            traceback.print_exc()
        err.print(f"[red]error:[/red] {exc.one_line()}", markup=True, highlight=False)
        # A control plane away for the whole retry budget is temporary: EX_TEMPFAIL.
        return (
            EXIT_UNREACHABLE if isinstance(exc, ControlPlaneUnreachableError) else EXIT_RGRID_ERROR
        )
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
