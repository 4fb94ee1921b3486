"""Bringing an execution's outputs home, never writing outside the target directory."""

from __future__ import annotations

from pathlib import Path

import structlog

from rgrid.errors import UnsafePathError
from rgrid.infra.storage.base import Storage, Track, output_prefix, safe_relative
from rgrid.models.execution import ExecutionStatus
from rgrid.paths import current_umask

log = structlog.get_logger()


async def download_outputs(
    storage: Storage,
    execution: ExecutionStatus,
    target: Path,
    prefix: str = "",
    track: Track | None = None,
) -> tuple[list[Path], list[str]]:
    """Download an execution's outputs under `target` (names prefixed by `prefix`);
    returns written paths and refused names."""
    written: list[Path] = []
    refused: list[str] = []
    root = target.resolve()
    mode = 0o666 & ~current_umask()
    # A run served from the cache returns the outputs its source execution stored.
    execution_id = execution.cached_from or execution.execution_id
    for output in execution.outputs:
        try:
            dest = root / safe_relative(prefix + output.path)
        except UnsafePathError:
            refused.append(output.path)
            continue
        # A link already in the target dir must not redirect a write elsewhere.
        if not dest.parent.resolve().is_relative_to(root) or dest.is_symlink():
            refused.append(output.path)
            continue
        progress = track(output.path, output.size) if track else None
        # The sha256 the node recorded: a copy damaged on the way is refused.
        await storage.get_file(
            output_prefix(execution_id) + output.path, dest, progress, sha256=output.sha256
        )
        # Storage writes through a private temp file: the output gets the user's umask,
        # as a file the user made would.
        dest.chmod(mode)
        written.append(dest)
    if track is not None:
        track.close()
    for name in refused:
        log.warning("output_refused", execution=execution_id, path=name)
    return written, refused
