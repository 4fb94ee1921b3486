"""Downloading outputs refuses names that would land outside the target directory (a
record altered in the ledger or storage, a link planted in the target) and writes the
rest: real local storage, the function `rgrid download` and `rgrid run` call."""

from __future__ import annotations

import hashlib
from pathlib import Path

from rgrid.client.outputs import download_outputs
from rgrid.infra.storage.base import output_prefix
from rgrid.infra.storage.local import LocalStorage
from rgrid.models.execution import ExecutionStatus, OutputFile, Phase


def output(path: str, data: bytes) -> OutputFile:
    return OutputFile(path=path, size=len(data), sha256=hashlib.sha256(data).hexdigest())


async def test_unsafe_output_names_are_refused_and_the_safe_ones_written(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    execution_id = "exec-unsafe"
    good = b"fine"
    await storage.put_bytes(output_prefix(execution_id) + "sub/real.txt", good)
    await storage.put_bytes(output_prefix(execution_id) + "link/x.txt", b"through a link")
    target = tmp_path / "work" / "outputs"
    (target).mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (target / "link").symlink_to(outside)  # planted before the download
    status = ExecutionStatus(
        execution_id=execution_id,
        phase=Phase.SUCCEEDED,
        outputs=[
            output("sub/real.txt", good),
            output("../escaped.txt", b"x"),
            output("/etc/evil", b"x"),
            output("sub/../../escaped2.txt", b"x"),
            output("link/x.txt", b"through a link"),
        ],
    )
    written, refused = await download_outputs(storage, status, target)
    assert written == [target.resolve() / "sub" / "real.txt"]
    assert (target / "sub" / "real.txt").read_bytes() == good
    assert refused == ["../escaped.txt", "/etc/evil", "sub/../../escaped2.txt", "link/x.txt"]
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["outputs"]
    assert not Path("/etc/evil").exists()
