"""Network namespaces made before they are needed, for the docker runtime.

Giving a container its bridge network (a veth pair, an address, the NAT rules) took about
170 ms of a trivial run's 350 ms here. A holder is a container that only sleeps, started
with that network ahead of demand; a run joins its namespace (NetworkMode container:<id>)
and the holder is deleted with the run, so no two runs ever share a namespace. Holders
carry their agent's host, pid and start time: an agent that starts deletes those of agents
that died without deleting their own (kill -9). With no holder ready (the first run, runs closer
together than holders are made, a daemon that cannot make them) a run makes its own
network, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import Any

import aiodocker
import structlog

from rgrid.infra import processes

log = structlog.get_logger()

OWNER_LABEL = "rgrid.netns-owner"
READY = 2  # holders kept ready: a node's back-to-back runs rarely start closer together


class NetnsPool:
    """Ready network holders on one Docker daemon, refilled in the background."""

    def __init__(self, image: str, ready: int = READY) -> None:
        self._image = image
        self._want = ready
        self._ready: list[str] = []
        self._owner = owner(os.getpid())
        self._refill: asyncio.Task[None] | None = None
        self._swept = False

    def take(self) -> str | None:
        """A ready holder's container id, now its caller's to delete; None if none is."""
        return self._ready.pop() if self._ready else None

    def fill(self) -> None:
        """Start making holders up to the ready count, unless that is under way. Called
        as a run ends: making them beside a starting container slowed both."""
        if self._refill is None or self._refill.done():
            self._refill = asyncio.create_task(self._fill())

    async def close(self) -> None:
        """Delete the ready holders (the agent is stopping)."""
        if self._refill is not None:  # not cancelled: a holder half made would be lost
            await self._refill
        async with aiodocker.Docker() as docker:
            while self._ready:
                await delete(docker, self._ready.pop())

    async def _fill(self) -> None:
        try:
            async with aiodocker.Docker() as docker:
                if not self._swept:
                    await self._sweep(docker)
                    self._swept = True
                while len(self._ready) < self._want:
                    holder = await docker.containers.run(self._config())
                    self._ready.append(holder.id)
        except aiodocker.DockerError as exc:  # runs make their own network from now on
            log.warning("netns_holders_off", image=self._image, error=str(exc))
            self._want = 0

    def _config(self) -> dict[str, Any]:
        return {
            "Image": self._image,
            "Cmd": ["sleep", "infinity"],
            "User": "65534:65534",
            "Labels": {OWNER_LABEL: self._owner},
            "HostConfig": {
                "NetworkMode": "bridge",
                "ReadonlyRootfs": True,
                "CapDrop": ["ALL"],
                "SecurityOpt": ["no-new-privileges"],
                "PidsLimit": 8,
                "Memory": 16 * 1024 * 1024,
            },
        }

    async def _sweep(self, docker: aiodocker.Docker) -> None:
        """Delete the holders of this host's agents that are no longer running."""
        host = socket.gethostname()
        for container in await docker.containers.list(all=True, filters={"label": [OWNER_LABEL]}):
            label = (container["Labels"] or {}).get(OWNER_LABEL, "")
            parts = label.split(":")  # host, pid, start time: another host's are left alone
            if len(parts) == 3 and parts[0] == host and parts[1].isdigit():
                if label != owner(int(parts[1])):  # that pid is gone, or another process
                    await delete(docker, container.id)


async def delete(docker: aiodocker.Docker, container_id: str) -> None:
    with contextlib.suppress(aiodocker.DockerError):
        await docker.containers.container(container_id).delete(force=True)


def owner(pid: int) -> str:
    """The owner label of a running process's holders: a reused pid is not the owner."""
    return f"{socket.gethostname()}:{pid}:{processes.start_ticks(pid)}"
