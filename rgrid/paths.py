"""Where rgrid keeps its state by default. Standard library only: the thin CLI client
reads it before anything heavy is imported."""

from __future__ import annotations

import os
from pathlib import Path


def xdg_dir(var: str, fallback: str) -> Path:
    """An XDG base directory with its standard fallback under HOME."""
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / fallback


def default_home() -> Path:
    """$RGRID_HOME, else rgrid's dir under the XDG data dir."""
    explicit = os.environ.get("RGRID_HOME")
    return Path(explicit) if explicit else xdg_dir("XDG_DATA_HOME", ".local/share") / "rgrid"


def command_server_socket(home: Path) -> Path:
    """The embedded stack's command server (see rgrid.cli.command_server)."""
    return home / "dev" / "cli.sock"
