"""A dependency layer is never pulled out from under a running script: 40 concurrent
--no-cache items of one batch build the layer once, a rebuild while items run leaves
them unharmed, and a broken layer is an infrastructure fault, not the script's exit."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from ulid import ULID

from rgrid.errors import EnvironmentBroken
from rgrid.infra.runtime.base import RunOutcome, RunRequest
from rgrid.infra.runtime.process import ProcessRuntime

# Each item proves its venv is whole after the rebuild: site ran and pyvenv.cfg is there.
ITEM = """
import os, sys, time
print("started", flush=True)
while not os.path.exists("go"):
    time.sleep(0.05)
assert open(os.path.join(sys.prefix, "pyvenv.cfg")).read()
print("ok", sys.prefix)
"""


@pytest.fixture
def node() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="rgrid-layer-test-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _request(root: Path, script: str, **fields: object) -> RunRequest:
    lease = root / "leases" / str(ULID())
    (lease / "work").mkdir(parents=True)
    (lease / "work" / "job.py").write_text(script)
    return RunRequest(
        execution_id=f"exec-{ULID()}",
        work_dir=lease / "work",
        tmp_dir=lease / "tmp",
        script="job.py",
        timeout_s=300,
        **fields,  # type: ignore[arg-type]
    )


async def _run(runtime: ProcessRuntime, request: RunRequest) -> tuple[RunOutcome, str]:
    out: list[bytes] = []
    outcome = await runtime.run(request, lambda _s, data: out.append(data))
    return outcome, b"".join(out).decode(errors="replace")


async def test_forty_no_cache_items_of_one_batch_build_the_layer_once(node: Path) -> None:
    runtime = ProcessRuntime(node / "cache", allow_unsandboxed=True)
    batch = f"batch-{ULID()}"
    script = "import sys; print('ok', sys.prefix)"
    results = await asyncio.gather(
        *(_run(runtime, _request(node, script, rebuild=True, batch_id=batch)) for _ in range(40))
    )
    assert [outcome.exit_code for outcome, _ in results] == [0] * 40, results[0][1]
    assert runtime.layer_builds == 1
    # A second batch with --no-cache rebuilds once more; a plain run reuses the layer.
    await _run(runtime, _request(node, script, rebuild=True, batch_id=f"batch-{ULID()}"))
    await _run(runtime, _request(node, script))
    assert runtime.layer_builds == 2


async def test_rebuild_while_items_run_leaves_them_unharmed(node: Path) -> None:
    runtime = ProcessRuntime(node / "cache", allow_unsandboxed=True)
    requests = [_request(node, ITEM) for _ in range(8)]
    outputs: list[list[bytes]] = [[] for _ in requests]
    started = [asyncio.Event() for _ in requests]

    def sink(index: int):  # type: ignore[no-untyped-def]
        def write(_stream: str, data: bytes) -> None:
            outputs[index].append(data)
            if b"started" in data:
                started[index].set()

        return write

    items = [
        asyncio.create_task(runtime.run(request, sink(i)))  # type: ignore[arg-type]
        for i, request in enumerate(requests)
    ]
    await asyncio.gather(*(event.wait() for event in started))
    key = next(iter((node / "cache" / "layers").iterdir())).name
    (old,) = runtime.held_layers(key)
    # A --no-cache run of another batch rebuilds the layer while all 8 items are in it.
    fresh, out = await _run(runtime, _request(node, "print('fresh')", rebuild=True))
    assert fresh.exit_code == 0, out
    assert runtime.layer_builds == 2
    assert Path(old).is_dir()  # still held: not removed
    for request in requests:
        (request.work_dir / "go").touch()
    outcomes = await asyncio.gather(*items)
    assert [o.exit_code for o in outcomes] == [0] * 8, b"".join(outputs[0]).decode()
    assert all(b"ok" in b"".join(out) for out in outputs)
    assert not Path(old).exists()  # removed once the last item let go


async def test_broken_layer_is_an_environment_fault_and_the_retry_rebuilds(node: Path) -> None:
    runtime = ProcessRuntime(node / "cache", allow_unsandboxed=True)
    venv = await runtime.venv_for([])
    (venv / "pyvenv.cfg").unlink()  # what a rebuild racing a start used to leave behind
    with pytest.raises(EnvironmentBroken):
        await _run(runtime, _request(node, "print('never')"))
    outcome, out = await _run(runtime, _request(node, "print('ran')"))
    assert outcome.exit_code == 0 and "ran" in out
    assert runtime.layer_builds == 2


async def test_agent_restart_adopts_the_newest_complete_layer(node: Path) -> None:
    first = ProcessRuntime(node / "cache", allow_unsandboxed=True)
    venv = await first.venv_for([])
    second = ProcessRuntime(node / "cache", allow_unsandboxed=True)
    assert await second.venv_for([]) == venv
    assert second.layer_builds == 0
