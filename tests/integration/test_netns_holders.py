"""The docker runtime's network holders, against a real dockerd: runs with a network get
one made ahead of them, never one another run had, and no holder outlives its agent."""

from __future__ import annotations

import asyncio
import os
import subprocess
import textwrap
from pathlib import Path

import aiodocker
import pytest

from rgrid.infra.runtime import netns
from rgrid.infra.runtime.base import RunRequest
from rgrid.infra.runtime.docker import DockerRuntime
from rgrid.infra.runtime.netns import OWNER_LABEL

pytestmark = pytest.mark.integration

# Which network namespace the script ran in, and what interfaces it had.
SCRIPT = """
    import os, time
    time.sleep(float(os.environ.get("HOLD_S", "0")))
    print(os.readlink("/proc/self/ns/net"), sorted(os.listdir("/sys/class/net")))
"""


async def holders(owner: str) -> list[str]:
    async with aiodocker.Docker() as docker:
        found = await docker.containers.list(all=True, filters={"label": [OWNER_LABEL]})
        return [c.id for c in found if c["Labels"].get(OWNER_LABEL) == owner]


async def soon_gone(ready: set[str], owner: str) -> bool:
    """Whether one of the `ready` holders is deleted within a few seconds."""
    try:
        async with asyncio.timeout(5):
            while not ready - set(await holders(owner)):
                await asyncio.sleep(0.05)
    except TimeoutError:
        return False
    return True


async def run(
    runtime: DockerRuntime, tmp_path: Path, index: int, network: bool, hold_s: float = 0
) -> str:
    work = tmp_path / f"work{index}"
    work.mkdir()
    (work / "job.py").write_text(textwrap.dedent(SCRIPT))
    out: list[bytes] = []
    outcome = await runtime.run(
        RunRequest(
            execution_id=f"exec-netns-{os.getpid()}-{index}",
            work_dir=work,
            tmp_dir=tmp_path,
            script="job.py",
            network=network,
            env={"HOLD_S": str(hold_s)},
        ),
        lambda stream, data: out.append(data) if stream == "out" else None,
    )
    assert outcome.exit_code == 0
    return b"".join(out).decode().strip()


async def test_runs_get_a_fresh_network_made_ahead_and_holders_end_with_the_runtime(
    docker_image: str, tmp_path: Path
) -> None:
    runtime = DockerRuntime(docker_image, docker_image)
    owner = netns.owner(os.getpid())
    seen, taken = [], []
    for index in range(4):
        ready = set(await holders(owner))
        seen.append(await run(runtime, tmp_path, index, network=True))
        taken.append(await soon_gone(ready, owner))
        async with asyncio.timeout(30):  # made while no run starts (as between commands)
            while not await holders(owner):
                await asyncio.sleep(0.05)
    # Each run had a network (eth0 besides lo). The first made its own; each later one
    # took a holder, deleted with it.
    assert all("'eth0'" in line for line in seen)
    assert taken == [False, True, True, True]
    # Two runs at once, both on holders, are in two namespaces.
    async with asyncio.timeout(30):
        while len(await holders(owner)) < 2:
            await asyncio.sleep(0.05)
    both = await asyncio.gather(*(run(runtime, tmp_path, 5 + i, True, 1.0) for i in range(2)))
    assert all("'eth0'" in line for line in both)
    assert both[0].split()[0] != both[1].split()[0]
    assert (await run(runtime, tmp_path, 9, network=False)).endswith("['lo']")
    await runtime.close()
    assert await holders(owner) == []


async def test_holders_of_a_killed_agent_are_deleted_by_the_next(
    docker_image: str, tmp_path: Path
) -> None:
    agent = subprocess.Popen(["sleep", "60"])
    orphan_owner = netns.owner(agent.pid)
    agent.kill()  # an agent killed with -9, its holder left behind
    agent.wait()
    async with aiodocker.Docker() as docker:
        orphan = await docker.containers.run(
            {
                "Image": docker_image,
                "Cmd": ["sleep", "infinity"],
                "Labels": {OWNER_LABEL: orphan_owner},
            }
        )
    runtime = DockerRuntime(docker_image, docker_image)
    await run(runtime, tmp_path, 0, network=True)  # its end makes holders: first, a sweep
    async with asyncio.timeout(30):
        while orphan.id in await holders(orphan_owner):
            await asyncio.sleep(0.05)
    await runtime.close()
