"""Heartbeating while an activity awaits a step that does not heartbeat itself."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from temporalio import activity

T = TypeVar("T")


async def heartbeating(step: Awaitable[T], every_s: float) -> T:
    """Await `step`, heartbeating every `every_s`: a long transfer inside an activity
    with a heartbeat timeout must not look like a dead worker."""
    task = asyncio.ensure_future(step)
    try:
        while not task.done():
            done, _ = await asyncio.wait({task}, timeout=every_s)
            if not done:  # a step that ended says so by the activity's own end
                activity.heartbeat()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return task.result()
