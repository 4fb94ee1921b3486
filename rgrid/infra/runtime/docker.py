"""The docker runtime: each run in a fresh, hardened container through the Engine API.

Every container runs as nobody (65534) on a read-only root filesystem with only the work
dir writable (and a tmpfs /tmp), all capabilities dropped, no-new-privileges, a pids limit,
memory and CPU limits, optionally no network, a hard timeout, and is removed afterwards.
Dependencies become a derived image per (base image, requirement set), built once per node
by running uv in a throwaway container and committing it: no Dockerfile is ever written,
so nothing a user passes can be interpolated into one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiodocker
import structlog
from uv import find_uv_bin

from rgrid.errors import DependencyInstallError, UserInputError
from rgrid.images import NODE_SUFFIXES, check_image
from rgrid.infra.deps import layer_key
from rgrid.infra.runtime.base import OutputSink, RunOutcome, RunRequest
from rgrid.infra.runtime.layers import LayerStore
from rgrid.infra.runtime.netns import NetnsPool, delete

log = structlog.get_logger()

NOBODY = "65534:65534"
PIDS_LIMIT = 256
LAYER_REPOSITORY = "rgrid-layer"
VENV = "/opt/rgrid/venv"
# Run as root in the throwaway build container only. Nothing the user wrote is part of
# these strings: requirements arrive as a file (pip) or as "$@" arguments (npm).
_PIP_BUILD = (
    "set -e; /opt/rgrid/uv venv --quiet --python /usr/bin/python3 /opt/rgrid/venv; "
    "/opt/rgrid/uv pip install --quiet --python /opt/rgrid/venv/bin/python "
    "-r /opt/rgrid/build/requirements.txt"
)
# Node finds /node_modules from any script under /work, as CommonJS and as an ES module.
_NPM_BUILD = (
    "set -e; command -v npm >/dev/null || { echo 'this image has no npm'; exit 1; }; "
    "npm install --prefix /opt/rgrid/npm --no-audit --no-fund --omit=dev --no-package-lock "
    '--loglevel=error "$@"; ln -s /opt/rgrid/npm/node_modules /node_modules'
)


async def docker_problem() -> str | None:
    """None when a Docker daemon answers on the default socket, else why it does not."""
    try:
        async with aiodocker.Docker() as docker:
            await docker.version()
    except AssertionError:  # aiodocker's bare assert when it found no address to try
        return "no socket at /var/run/docker.sock and DOCKER_HOST is unset; start dockerd"
    except Exception as exc:  # any other failure also means no daemon to use
        return f"{type(exc).__name__}: {exc}".rstrip(": ")
    return None


async def docker_available() -> bool:
    """True when a Docker daemon answers on the default socket."""
    return await docker_problem() is None


class DockerRuntime:
    """Runs scripts in containers; dependency layers are cached per node."""

    name = "docker"
    isolation = (
        "docker container: read-only root, uid 65534, no capabilities, pids and memory bounds"
    )

    def __init__(
        self,
        python_image: str,
        node_image: str,
        ca_bundle: Path | None = None,
    ) -> None:
        self._images = {"python": python_image, "node": node_image}
        self._ca_bundle = ca_bundle if ca_bundle and ca_bundle.is_file() else None
        # Runs start from a layer's image id; a rebuild moves the tag to a new image and
        # the old one is deleted once no run holds it.
        self._layers = LayerStore(remove=_delete_image)
        self._netns = NetnsPool(python_image)
        self._removals: set[asyncio.Task[None]] = set()

    @property
    def layer_builds(self) -> int:
        """Layer images this runtime has built since it started."""
        return self._layers.builds

    def base_image(self, request: RunRequest) -> str:
        """The image a request runs on before its dependency layer."""
        if request.image:
            return check_image(request.image)
        if request.default_image:  # resolved by the client: what the cache key names
            return check_image(request.default_image)
        language = "node" if request.script.endswith(NODE_SUFFIXES) else "python"
        return self._images[language]

    async def has_image(self, reference: str) -> bool:
        """True if the image is present on this node, or could be pulled."""
        async with aiodocker.Docker() as docker:
            try:
                await docker.images.inspect(reference)
                return True
            except aiodocker.DockerError:
                pass
            try:
                await docker.images.pull(reference)
                return True
            except aiodocker.DockerError:
                return False

    async def close(self) -> None:
        await asyncio.gather(*self._removals, return_exceptions=True)
        await self._netns.close()

    async def run(self, request: RunRequest, sink: OutputSink) -> RunOutcome:
        async with aiodocker.Docker() as docker, self._image_for(docker, request) as image:
            _open_work_dir(request.work_dir)
            holder = self._netns.take() if request.network else None
            try:
                container = await docker.containers.create(
                    container_config(request, image, holder),
                    name=f"rgrid-{request.execution_id}-{os.urandom(4).hex()}",
                )
            except BaseException:
                await asyncio.shield(self._remove(None, holder, request.network))
                raise
            exited = False
            try:
                await container.start()
                pumps = [
                    asyncio.create_task(_pump(container, "out", sink)),
                    asyncio.create_task(_pump(container, "err", sink)),
                ]
                try:
                    async with asyncio.timeout(request.timeout_s):
                        status = await container.wait(timeout=None)
                    await asyncio.gather(*pumps)
                    exited = True
                    return RunOutcome(exit_code=int(status["StatusCode"]), runtime=self.name)
                except TimeoutError:
                    with contextlib.suppress(aiodocker.DockerError):
                        await container.kill()
                    return RunOutcome(exit_code=None, timed_out=True, runtime=self.name)
                finally:
                    for pump in pumps:
                        pump.cancel()
            finally:
                removal = asyncio.create_task(self._remove(container.id, holder, request.network))
                self._removals.add(removal)
                removal.add_done_callback(self._removals.discard)
                # A script that exited has left its outputs in the work dir: its container
                # goes after the run has answered (~50 ms here). One killed or cancelled
                # is gone before the run returns, as is one on a layer (the layer's old
                # image can be deleted only once no container uses it).
                if not exited or request.requirements:
                    await asyncio.shield(removal)

    async def _remove(self, container_id: str | None, holder: str | None, refill: bool) -> None:
        """Delete a run's container and its network holder, then make the next holder."""
        async with aiodocker.Docker() as docker:
            if container_id is not None:
                await delete(docker, container_id)
            if holder is not None:
                await delete(docker, holder)
        if refill:
            self._netns.fill()

    @contextlib.asynccontextmanager
    async def _image_for(self, docker: aiodocker.Docker, request: RunRequest) -> AsyncIterator[str]:
        base = self.base_image(request)
        try:
            base_id = (await docker.images.inspect(base))["Id"]
        except aiodocker.DockerError as exc:
            raise UserInputError(
                f"image {base!r} is not on this node and cannot be pulled",
                "build or pull it, or set RGRID_PYTHON_IMAGE / --image",
            ) from exc
        if not request.requirements:
            yield base
            return
        tag = layer_key(request.requirements, base_id)[:24]
        layer = f"{LAYER_REPOSITORY}:{tag}"
        if self._layers.current(tag) is None:
            with contextlib.suppress(aiodocker.DockerError):  # built by an earlier agent
                self._layers.adopt(tag, (await docker.images.inspect(layer))["Id"])

        async def build() -> str:
            await self._build_layer(docker, base, tag, request)
            return str((await docker.images.inspect(layer))["Id"])

        async with self._layers.hold(tag, build, request.rebuild, request.batch_id) as image_id:
            yield image_id

    async def _build_layer(
        self, docker: aiodocker.Docker, base: str, tag: str, request: RunRequest
    ) -> None:
        requirements = request.requirements
        with tempfile.TemporaryDirectory(prefix="rgrid-layer-") as build:
            Path(build, "requirements.txt").write_text("\n".join(requirements) + "\n")
            binds = [f"{find_uv_bin()}:/opt/rgrid/uv:ro", f"{build}:/opt/rgrid/build:ro"]
            env = ["UV_CACHE_DIR=/tmp/uv-cache", "UV_SYSTEM_CERTS=1", "HOME=/tmp"]
            if request.rebuild:  # --no-cache: ask the index again rather than the cache
                env += ["UV_REFRESH=1", "npm_config_prefer_online=true"]
            if self._ca_bundle is not None:  # a node behind a TLS-inspecting proxy
                binds.append(f"{self._ca_bundle}:/opt/rgrid/ca.crt:ro")
                env += ["SSL_CERT_FILE=/opt/rgrid/ca.crt", "npm_config_cafile=/opt/rgrid/ca.crt"]
            if request.script.endswith(NODE_SUFFIXES):
                cmd = ["/bin/sh", "-c", _NPM_BUILD, "sh", *requirements]
            else:
                cmd = ["/bin/sh", "-c", _PIP_BUILD]
            container = await docker.containers.create(
                {"Image": base, "Cmd": cmd, "Env": env, "HostConfig": {"Binds": binds}}
            )
            try:
                await container.start()
                status = await container.wait(timeout=None)
                if status["StatusCode"] != 0:
                    lines = await container.log(stdout=True, stderr=True)
                    tail = "; ".join("".join(lines).strip().splitlines()[-3:])
                    raise DependencyInstallError(
                        f"installing {', '.join(requirements)} failed", tail or "no output"
                    )
                await container.commit(repository=LAYER_REPOSITORY, tag=tag)
                log.info("layer_built", image=f"{LAYER_REPOSITORY}:{tag}", base=base)
            finally:
                with contextlib.suppress(aiodocker.DockerError):
                    await container.delete(force=True)


async def _delete_image(image_id: str) -> None:
    async with aiodocker.Docker() as docker:
        with contextlib.suppress(aiodocker.DockerError):  # in use by a container: stays
            await docker.images.delete(image_id, noprune=False)


def container_config(
    request: RunRequest, image: str, netns_holder: str | None = None
) -> dict[str, Any]:
    """The hardened container for one run; with a holder, in that holder's network."""
    interpreter = "node" if request.script.endswith(NODE_SUFFIXES) else "python3"
    env = {
        "PATH": f"{VENV}/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/work",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        **request.env,
        "RGRID_EXECUTION_ID": request.execution_id,
    }
    memory = request.resources.memory_mb * 1024 * 1024
    network = "bridge" if request.network else "none"
    if netns_holder is not None:
        network = f"container:{netns_holder}"
    return {
        "Image": image,
        "Cmd": [interpreter, request.script, *request.args],
        "WorkingDir": "/work",
        "User": NOBODY,
        "Env": [f"{key}={value}" for key, value in env.items()],
        "Labels": {"rgrid.execution": request.execution_id},
        "NetworkDisabled": not request.network,
        "HostConfig": {
            "Binds": [f"{request.work_dir}:/work:rw"],
            "ReadonlyRootfs": True,
            "Tmpfs": {"/tmp": "rw,nosuid,nodev,size=256m"},
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
            "PidsLimit": PIDS_LIMIT,
            "Memory": memory,
            "MemorySwap": memory,  # no swap: the limit is the limit
            "NanoCpus": int(request.resources.cpus * 1_000_000_000),
            "NetworkMode": network,
        },
    }


def _open_work_dir(work_dir: Path) -> None:
    # The container runs as nobody: it must read the staged files and write beside them.
    # The dir is the run's own; nothing else lives there.
    for directory, _dirs, files in os.walk(work_dir):
        os.chmod(directory, 0o777)
        for name in files:
            path = Path(directory, name)
            path.chmod(path.stat().st_mode | 0o444)


async def _pump(container: Any, stream: str, sink: OutputSink) -> None:
    flags = {"stdout": stream == "out", "stderr": stream == "err"}
    async for chunk in container.log(follow=True, **flags):
        sink(stream, chunk.encode())  # type: ignore[arg-type]
