"""Shared consoles and renderers, so every command prints the same way."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from rgrid.models.execution import ExecutionStatus, Phase
from rgrid.money.pricing import format_microns

if TYPE_CHECKING:  # the log store pulls in the codec and storage: not for `--help`
    from rgrid.infra.logstore import LogRecord

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def reset_consoles() -> None:
    """Set the consoles up again for the streams and environment this process has now
    (a command server's child: a terminal, colours and width are the client's)."""
    out.__init__(highlight=False, soft_wrap=True)  # type: ignore[misc]
    err.__init__(stderr=True, highlight=False, soft_wrap=True)  # type: ignore[misc]


PHASE_STYLE = {
    Phase.SUCCEEDED: "green",
    Phase.FAILED: "red",
    Phase.TIMED_OUT: "red",
    Phase.CANCELLED: "yellow",
}

# Options several commands share.
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
OutputDirOption = Annotated[
    Path, typer.Option("--output-dir", "-o", help="Where outputs are downloaded.")
]

# Exit codes of rgrid itself, apart from the script's own (as docker run and timeout do).
EXIT_RGRID_ERROR = 125
EXIT_TIMED_OUT = 124
EXIT_CANCELLED = 130
EXIT_UNREACHABLE = 75  # EX_TEMPFAIL: the control plane stayed away; `rgrid watch` resumes


def print_json(data: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(data, default=str, indent=2) + "\n")


def write_record(record: LogRecord) -> None:
    """Pass the script's output through unchanged, to the stream it was written to."""
    stream = sys.stdout.buffer if record.stream == "out" else sys.stderr.buffer
    stream.write(record.data)
    stream.flush()


def phase_text(phase: Phase) -> str:
    """A phase, coloured by outcome."""
    style = PHASE_STYLE.get(phase)
    return f"[{style}]{phase.value}[/{style}]" if style else phase.value


def when(value: datetime | None) -> str:
    """A timestamp for tables: local time, to the second."""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def short_when(value: datetime | None) -> str:
    """A timestamp for narrow tables: the time if it is today, else the date."""
    if value is None:
        return "-"
    local = value.astimezone()
    today = datetime.now().astimezone().date()
    return local.strftime("%H:%M:%S") if local.date() == today else local.strftime("%Y-%m-%d")


def cost(status: ExecutionStatus) -> str:
    """An execution's cost for humans."""
    return format_cost(status.cost_microns)


def format_cost(amount: int) -> str:
    """Integer microns as euros, exact to the micron: 1234 -> €0.001234, 0 -> €0.00."""
    return format_microns(amount)


def duration(status: ExecutionStatus) -> str:
    """How long the script ran, precise enough that short runs do not read as 0."""
    seconds = status.duration_s
    if seconds is None:
        return "-"
    return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"


def exit_code_for(status: ExecutionStatus) -> int:
    """The process exit code that reports an execution's outcome."""
    if status.phase is Phase.TIMED_OUT:
        return EXIT_TIMED_OUT
    if status.phase is Phase.CANCELLED:
        return EXIT_CANCELLED
    if status.exit_code is not None:
        return status.exit_code
    return 0 if status.phase is Phase.SUCCEEDED else EXIT_RGRID_ERROR


def detached_hint(workflow_id: str) -> str:
    """What to say when the user stops watching something that keeps running."""
    return (
        f"stopped watching {workflow_id}; it keeps running: "
        f"`rgrid status {workflow_id}` shows it, `rgrid cancel {workflow_id}` stops it"
    )
