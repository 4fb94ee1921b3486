"""Choosing the runtime for a run: docker when asked, or when `auto` and the node has a
daemon with the image; the process runtime otherwise."""

from __future__ import annotations

import time

from rgrid.errors import UserInputError
from rgrid.infra.runtime.base import OutputSink, RunOutcome, RunRequest
from rgrid.infra.runtime.docker import DockerRuntime
from rgrid.infra.runtime.process import ProcessRuntime


class SelectingRuntime:
    """The node's runtime: dispatches each run to process or docker."""

    name = "auto"

    IMAGE_CHECK_TTL_S = 300.0  # a missing image is looked for again after this long

    def __init__(self, process: ProcessRuntime, docker: DockerRuntime | None) -> None:
        self._process = process
        self._docker = docker
        self._images: dict[str, tuple[bool, float]] = {}

    @property
    def isolation(self) -> str:
        """What this node's runs get: docker's isolation where it runs them, else process's."""
        if self._docker is None:
            return self._process.isolation
        return f"{self._docker.isolation}; otherwise {self._process.isolation}"

    async def close(self) -> None:
        if self._docker is not None:
            await self._docker.close()

    async def run(self, request: RunRequest, sink: OutputSink) -> RunOutcome:
        runtime = await self._choose(request)
        return await runtime.run(request, sink)

    async def _choose(self, request: RunRequest) -> ProcessRuntime | DockerRuntime:
        if request.runtime == "process" and not request.image:
            return self._process
        if request.runtime == "docker" or request.image:
            if self._docker is None:
                raise UserInputError(
                    "this node has no Docker daemon", "use --runtime process, or start dockerd"
                )
            return self._docker
        # auto: isolate when this node can; say which ran (RunOutcome.runtime).
        if self._docker is not None and await self._image_ready(self._docker.base_image(request)):
            return self._docker
        return self._process

    async def _image_ready(self, image: str) -> bool:
        assert self._docker is not None
        known = self._images.get(image)
        if known and (known[0] or time.monotonic() - known[1] < self.IMAGE_CHECK_TTL_S):
            return known[0]
        ready = await self._docker.has_image(image)
        self._images[image] = (ready, time.monotonic())
        return ready
