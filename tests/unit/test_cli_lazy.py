"""The CLI loads a command's module only when that command runs, and its listing in
`rgrid --help` says what the command's own help says."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rgrid.cli.app import load_command
from rgrid.cli.commands import COMMANDS

HEAVY = ("sqlalchemy", "temporalio", "aiodocker", "aioboto3", "botocore", "hcloud", "aiohttp")


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_listing_says_what_the_commands_own_help_says(name: str) -> None:
    command = load_command(name)
    first_paragraph = (command.short_help or command.help or "").split("\n\n")[0]
    assert COMMANDS[name][2] == " ".join(first_paragraph.split())


@pytest.mark.parametrize("argv", [["--help"], ["version"], ["--version"]])
def test_help_and_version_load_no_heavy_library(argv: list[str]) -> None:
    code = (
        "import sys; from rgrid.cli.app import run_command; "
        f"sys.argv = ['rgrid', *{argv!r}]; code = run_command(); "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules)); sys.exit(code)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
