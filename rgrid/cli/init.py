"""`rgrid init`: write a config profile, private to the user."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated

import tomli_w
import typer

from rgrid.cli.output import out
from rgrid.config import config_file_path


def init(
    profile: Annotated[str, typer.Option(help="Profile name to write.")] = "default",
    temporal_address: Annotated[
        str | None, typer.Option(help="host:port of a Temporal server (unset: embedded).")
    ] = None,
    namespace: Annotated[str | None, typer.Option(help="Temporal namespace.")] = None,
    database_url: Annotated[str | None, typer.Option(help="Ledger URL (unset: SQLite).")] = None,
    storage_url: Annotated[
        str | None, typer.Option(help="Storage URL (unset: a local directory).")
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(help="Client certificate for Temporal mTLS (a path).")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(help="Its private key (a path; the key stays in its file).")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(help="Temporal Cloud API key (kept in the 0600 file).")
    ] = None,
) -> None:
    """Create or update a profile in the config file (dir 0700, file 0600)."""
    path = config_file_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    data = tomllib.loads(path.read_text()) if path.exists() else {}
    section = data.setdefault("profiles", {}).setdefault(profile, {})
    for key, value in {
        "temporal_address": temporal_address,
        "temporal_namespace": namespace,
        "database_url": database_url,
        "storage_url": storage_url,
        "temporal_tls_cert": str(tls_cert.resolve()) if tls_cert else None,
        "temporal_tls_key": str(tls_key.resolve()) if tls_key else None,
        "temporal_api_key": api_key,
    }.items():
        if value is not None:
            section[key] = value
    # Create with 0600 from the start: the file may hold credentials.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        tomli_w.dump(data, fh)
    path.chmod(0o600)
    out.print(f"profile {profile!r} written to {path}")
    where = "the embedded stack on this machine" if not section else "the servers it names"
    use = "" if profile == "default" else f" --profile {profile}"
    out.print(f"next: `rgrid{use} run examples/hello.py` runs a script on {where}; ")
    out.print(f"      `rgrid{use} config` shows the settings in effect and where each comes from")
