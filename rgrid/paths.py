"""Where rgrid keeps its state by default. Standard library only: the thin CLI client
reads it before anything heavy is imported."""

from __future__ import annotations

import os
from pathlib import Path


def xdg_dir(var: str, fallback: str) -> Path:
    """An XDG base directory with its standard fallback under HOME."""
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / fallback


def data_home() -> Path:
    """rgrid's dir under the XDG data dir: the state dir when nothing names another."""
    return xdg_dir("XDG_DATA_HOME", ".local/share") / "rgrid"


def default_home() -> Path:
    """$RGRID_HOME, else data_home()."""
    explicit = os.environ.get("RGRID_HOME")
    return Path(explicit) if explicit else data_home()


def command_server_socket(home: Path) -> Path:
    """The embedded stack's command server (see rgrid.cli.command_server)."""
    return home / "dev" / "cli.sock"


def config_file_path() -> Path:
    """Where the config file lives: $RGRID_CONFIG, else the XDG config dir."""
    explicit = os.environ.get("RGRID_CONFIG")
    if explicit:
        return Path(explicit)
    return xdg_dir("XDG_CONFIG_HOME", ".config") / "rgrid" / "config.toml"


def stack_file(home: Path) -> Path:
    """Where a running embedded stack describes itself."""
    return home / "dev" / "stack.json"


def current_umask() -> int:
    """This process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask
