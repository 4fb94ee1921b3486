"""Dependency layers that are never pulled out from under a running script.

A layer (a venv, an npm prefix, a docker layer image) is built once per node under a new
version; runs hold the version they started with, a rebuild makes a new version current,
and an old version is removed only when the last run holding it lets go. The counts live
in this process: one agent per node owns its cache dir and its layer images.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger()

# How many (batch, layer) pairs to remember as rebuilt: a batch far older than this many
# rebuilds ago rebuilding once more is harmless.
BATCH_MEMORY = 4096

Build = Callable[[], Awaitable[str]]  # builds a new version, returns its handle
Remove = Callable[[str], Awaitable[None]]  # removes a version no run holds any more


@dataclass
class _Layer:
    current: str | None = None
    holds: dict[str, int] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class LayerStore:
    """Versions of each layer key, with the runs holding each version counted."""

    def __init__(self, remove: Remove) -> None:
        self._remove = remove
        self._layers: dict[str, _Layer] = {}
        self._rebuilt: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.builds = 0  # layers built by this process (the benchmark reports it)

    def adopt(self, key: str, version: str) -> None:
        """Make a version found on disk (or in docker) current, as if built here."""
        layer = self._layers.setdefault(key, _Layer())
        if layer.current is None:
            layer.current = version

    @contextlib.asynccontextmanager
    async def hold(
        self, key: str, build: Build, rebuild: bool = False, batch_id: str | None = None
    ) -> AsyncIterator[str]:
        """The current version of `key` (built first if missing, or rebuilt when asked:
        once per batch), held until the block ends."""
        layer = self._layers.setdefault(key, _Layer())
        async with layer.lock:  # concurrent runs needing the same new layer build it once
            if layer.current is None or (rebuild and self._should_rebuild(key, batch_id)):
                version = await build()
                self.builds += 1
                previous, layer.current = layer.current, version
                if batch_id is not None:
                    self._remember(key, batch_id)
                log.info("layer_built", key=key, version=version, batch=batch_id)
                if previous is not None:
                    await self._drop_if_unheld(layer, previous)
            version = layer.current
            assert version is not None
            layer.holds[version] = layer.holds.get(version, 0) + 1
        try:
            yield version
        finally:
            layer.holds[version] -= 1
            if layer.holds[version] == 0:
                del layer.holds[version]
                if version != layer.current:
                    await asyncio.shield(self._drop_if_unheld(layer, version))

    async def discard(self, key: str, version: str) -> None:
        """Forget a broken version: the next run builds afresh; it is removed once unheld."""
        layer = self._layers.get(key)
        if layer is not None and layer.current == version:
            layer.current = None
            await self._drop_if_unheld(layer, version)

    def current(self, key: str) -> str | None:
        """The version new runs of `key` get, None before the first build."""
        layer = self._layers.get(key)
        return layer.current if layer else None

    def held(self, key: str) -> dict[str, int]:
        """Versions of `key` runs hold now, with how many runs hold each."""
        layer = self._layers.get(key)
        return dict(layer.holds) if layer else {}

    def _should_rebuild(self, key: str, batch_id: str | None) -> bool:
        # A single --no-cache run rebuilds; a --no-cache batch rebuilds once per node.
        return batch_id is None or (batch_id, key) not in self._rebuilt

    def _remember(self, key: str, batch_id: str) -> None:
        self._rebuilt[(batch_id, key)] = None
        while len(self._rebuilt) > BATCH_MEMORY:
            self._rebuilt.popitem(last=False)

    async def _drop_if_unheld(self, layer: _Layer, version: str) -> None:
        if layer.holds.get(version, 0) == 0 and version != layer.current:
            try:
                await self._remove(version)
            except Exception as exc:  # a stale layer left on disk is no reason to fail a run
                log.warning("layer_remove_failed", version=version, error=str(exc))
