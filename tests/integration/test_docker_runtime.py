"""The docker runtime against a real dockerd, with a base image built from Debian packages."""

from __future__ import annotations

import asyncio
import hashlib
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest

from rgrid.errors import DependencyInstallError, UserInputError
from rgrid.infra.deps import layer_key
from rgrid.infra.runtime.base import RunOutcome, RunRequest
from rgrid.infra.runtime.docker import LAYER_REPOSITORY, DockerRuntime
from rgrid.models.execution import Resources
from tests.docker_images import ensure_node_image

pytestmark = pytest.mark.integration


@pytest.fixture
async def runtime(docker_image: str) -> AsyncIterator[DockerRuntime]:
    made = DockerRuntime(docker_image, docker_image, Path("/etc/ssl/certs/ca-certificates.crt"))
    yield made
    await made.close()  # as its agent does when it stops: the network holders go


async def run(
    runtime: DockerRuntime, tmp_path: Path, body: str, script: str = "job.py", **request: object
) -> tuple[RunOutcome, str, str]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / script).write_text(textwrap.dedent(body))
    out: list[bytes] = []
    err: list[bytes] = []
    outcome = await runtime.run(
        RunRequest(
            execution_id=execution_id(tmp_path),
            work_dir=work,
            tmp_dir=tmp_path,
            script=script,
            **request,  # type: ignore[arg-type]
        ),
        lambda stream, data: (out if stream == "out" else err).append(data),
    )
    return outcome, b"".join(out).decode(), b"".join(err).decode()


def execution_id(tmp_path: Path) -> str:
    """The test's own execution id: its tmp dir is unique to this run of the suite, so
    another run sharing the daemon never owns (or counts) the same containers."""
    return f"exec-test-{hashlib.sha256(str(tmp_path).encode()).hexdigest()[:16]}"


async def rgrid_containers(tmp_path: Path) -> list[dict[str, object]]:
    """The containers of this test's runs, and no one else's."""
    label = f"rgrid.execution={execution_id(tmp_path)}"
    async with aiodocker.Docker() as docker:
        return await docker.containers.list(all=True, filters={"label": [label]})  # type: ignore[return-value]


async def wait_removed(tmp_path: Path) -> None:
    """A script that exited has its container removed just after its run answers."""
    async with asyncio.timeout(10):
        while await rgrid_containers(tmp_path):
            await asyncio.sleep(0.05)


async def test_the_container_is_hardened_and_removed(
    runtime: DockerRuntime, tmp_path: Path
) -> None:
    body = """
        import os, time
        print("uid", os.getuid(), flush=True)
        for path in ("/etc/owned", "/usr/owned", "/owned"):
            try:
                open(path, "w")
                print("WROTE", path)
            except OSError as exc:
                print("refused", path, exc.strerror)
        open("/tmp/scratch", "w").write("tmpfs is writable")
        open("result.txt", "w").write("work dir is writable")
        time.sleep(3)
    """
    task = asyncio.create_task(
        run(runtime, tmp_path, body, resources=Resources(cpus=0.5, memory_mb=128), network=False)
    )
    async with asyncio.timeout(30):
        while not (containers := await rgrid_containers(tmp_path)):
            await asyncio.sleep(0.1)
    async with aiodocker.Docker() as docker:
        inspected = await docker.containers.get(containers[0]["Id"])  # type: ignore[index,arg-type]
        config = inspected._container
    outcome, out, _ = await task
    host = config["HostConfig"]
    assert config["Config"]["User"] == "65534:65534"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["PidsLimit"] == 256
    assert host["Memory"] == 128 * 1024 * 1024 and host["NanoCpus"] == 500_000_000
    assert host["NetworkMode"] == "none"
    assert outcome.exit_code == 0 and outcome.runtime == "docker"
    assert "uid 65534" in out and "WROTE" not in out
    assert (tmp_path / "work" / "result.txt").read_text() == "work dir is writable"
    await wait_removed(tmp_path)


async def test_a_fork_bomb_is_contained(runtime: DockerRuntime, tmp_path: Path) -> None:
    body = """
        import os, sys
        children = 0
        try:
            while True:
                if os.fork() == 0:
                    import time; time.sleep(30); os._exit(0)
                children += 1
        except OSError:
            print("fork refused after", children, "children")
            sys.exit(3)
    """
    outcome, out, _ = await run(runtime, tmp_path, body, timeout_s=60)
    assert outcome.exit_code == 3
    assert int(out.split()[-2]) < 256
    await wait_removed(tmp_path)


async def test_a_memory_bomb_is_killed_at_the_limit(runtime: DockerRuntime, tmp_path: Path) -> None:
    body = """
        blocks = []
        while True:
            blocks.append(bytearray(16 * 1024 * 1024))
    """
    outcome, _, _ = await run(runtime, tmp_path, body, resources=Resources(memory_mb=96))
    assert outcome.exit_code == 137  # SIGKILL from the OOM killer


async def test_timeout_and_cancel_kill_and_remove_the_container(
    runtime: DockerRuntime, tmp_path: Path
) -> None:
    outcome, _, _ = await run(runtime, tmp_path, "import time; time.sleep(60)\n", timeout_s=2)
    assert outcome.timed_out and outcome.exit_code is None
    assert await rgrid_containers(tmp_path) == []

    task = asyncio.create_task(run(runtime, tmp_path, "import time; time.sleep(60)\n"))
    async with asyncio.timeout(30):
        while not await rgrid_containers(tmp_path):
            await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(10):
        while await rgrid_containers(tmp_path):
            await asyncio.sleep(0.1)


def own_requirements(tmp_path: Path) -> list[str]:
    """six, under a marker that is always true and names this test's run: the layer it
    builds is this test's own, so no other run's layer is counted, reused or removed."""
    return [f'six==1.16.0; platform_system != "{execution_id(tmp_path)}"']


async def layer_of(runtime: DockerRuntime, requirements: list[str], script: str = "job.py") -> str:
    async with aiodocker.Docker() as docker:
        base_id = (await docker.images.inspect(runtime.base_image(request_for(script))))["Id"]
    return f"{LAYER_REPOSITORY}:{layer_key(requirements, base_id)[:24]}"


async def image_id(tag: str) -> str | None:
    async with aiodocker.Docker() as docker:
        try:
            return str((await docker.images.inspect(tag))["Id"])
        except aiodocker.DockerError:
            return None


@pytest.fixture
async def own_layer(runtime: DockerRuntime, tmp_path: Path) -> AsyncIterator[tuple[list[str], str]]:
    """This test's requirements and the tag of the layer they build; removed afterwards."""
    requirements = own_requirements(tmp_path)
    tag = await layer_of(runtime, requirements)
    yield requirements, tag
    if await image_id(tag) is not None:
        async with aiodocker.Docker() as docker:
            await docker.images.delete(tag, force=True)


async def test_dependencies_build_one_layer_that_later_runs_reuse(
    runtime: DockerRuntime, tmp_path: Path, own_layer: tuple[list[str], str]
) -> None:
    requirements, tag = own_layer
    body = "import six\nprint('six', six.__version__)\n"
    assert await image_id(tag) is None
    first, out, err = await run(runtime, tmp_path, body, requirements=requirements)
    assert first.exit_code == 0 and "six 1.16.0" in out, err
    built = await image_id(tag)
    assert built is not None
    second, out, _ = await run(runtime, tmp_path, body, requirements=requirements)
    assert second.exit_code == 0 and "six 1.16.0" in out
    assert await image_id(tag) == built  # reused, not built again


async def test_a_failed_install_names_the_package(runtime: DockerRuntime, tmp_path: Path) -> None:
    with pytest.raises(DependencyInstallError, match="rgrid-no-such-package-0456"):
        await run(runtime, tmp_path, "print(1)\n", requirements=["rgrid-no-such-package-0456"])


async def test_a_missing_image_is_a_clear_error(runtime: DockerRuntime, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="is not on this node"):
        await run(runtime, tmp_path, "print(1)\n", image="rgrid-test/absent:never")


async def test_rebuild_builds_the_layer_again(
    runtime: DockerRuntime, tmp_path: Path, own_layer: tuple[list[str], str]
) -> None:
    requirements, tag = own_layer
    body = "import six\nprint('six', six.__version__)\n"
    await run(runtime, tmp_path, body, requirements=requirements)
    first_id = await image_id(tag)
    assert first_id is not None
    again, out, err = await run(runtime, tmp_path, body, requirements=requirements, rebuild=True)
    assert again.exit_code == 0 and "six 1.16.0" in out, err
    assert await image_id(tag) not in (None, first_id)


async def test_forty_no_cache_items_of_one_batch_build_the_layer_once(
    runtime: DockerRuntime, tmp_path: Path, own_layer: tuple[list[str], str]
) -> None:
    requirements, tag = own_layer
    body = "import six\nprint('six', six.__version__)\n"
    items = [tmp_path / f"item-{i}" for i in range(40)]
    for item in items:
        item.mkdir()
    results = await asyncio.gather(
        *(
            run(runtime, item, body, requirements=requirements, rebuild=True, batch_id="b-1")
            for item in items
        )
    )
    assert [outcome.exit_code for outcome, _, _ in results] == [0] * 40, results[0][2]
    assert all("six 1.16.0" in out for _, out, _ in results)
    assert runtime.layer_builds == 1
    assert await image_id(tag) is not None


@pytest.fixture(scope="module")
async def node_image(docker_image: str) -> str:
    built = await asyncio.to_thread(ensure_node_image)
    if built is None:
        pytest.skip("cannot build a Node.js image here (needs the docker CLI and mmdebstrap)")
    return built


async def test_package_json_dependencies_become_one_npm_layer(
    node_image: str, tmp_path: Path
) -> None:
    runtime = DockerRuntime(node_image, node_image, Path("/etc/ssl/certs/ca-certificates.crt"))
    # The npm layer may be shared with another run of the suite: it is never removed here,
    # and only its own tag is looked at (a concurrent build of it yields the same layer).
    needs = {"requirements": ["is-number@^7.0.0"]}
    tag = await layer_of(runtime, needs["requirements"], "job.js")
    cjs = "const isNumber = require('is-number');\nconsole.log('cjs', isNumber(7));\n"
    first, out, err = await run(runtime, tmp_path, cjs, script="job.js", **needs)
    assert first.exit_code == 0 and "cjs true" in out, err
    built = await image_id(tag)
    assert built is not None
    esm = "import isNumber from 'is-number';\nconsole.log('esm', isNumber('no'));\n"
    second, out, err = await run(runtime, tmp_path, esm, script="job.mjs", **needs)
    assert second.exit_code == 0 and "esm false" in out, err
    assert await image_id(tag) == built
    await runtime.close()


def request_for(script: str) -> RunRequest:
    return RunRequest(execution_id="x", work_dir=Path("/"), tmp_dir=Path("/"), script=script)
