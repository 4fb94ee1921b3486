"""Riding out a control plane that is briefly away (Temporal restarting, a network blip).

A client call that fails on transport is tried again with backoff for at most
`settings.unreachable_retry_s` in a row; the user is told once per outage, and after the
budget one ControlPlaneUnreachableError ends the command (exit 75, EX_TEMPFAIL). An
embedded stack that stopped (rather than restarts a part) ends it at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio.service import RPCError, RPCStatusCode

from rgrid.errors import ControlPlaneUnreachableError, ServiceUnavailableError, StorageError

T = TypeVar("T")

RETRIED_RPC = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.CANCELLED,  # the server went away mid-call (its shutdown cancels calls)
    RPCStatusCode.UNKNOWN,  # transport errors the core client could not classify
}
MAX_BACKOFF_S = 5.0
NOTICE = "control plane unreachable, retrying…"


def is_transport_error(exc: BaseException) -> bool:
    """True for failures of reaching a part, not of what was asked of it."""
    if isinstance(exc, RPCError):
        # A query while no control worker polls (one restarting): the server answers
        # FAILED_PRECONDITION "no poller seen for task queue recently".
        no_worker = exc.status == RPCStatusCode.FAILED_PRECONDITION and "poller" in str(exc)
        return exc.status in RETRIED_RPC or no_worker
    if isinstance(exc, ServiceUnavailableError | StorageError):
        return exc.retryable
    return isinstance(exc, ConnectionError | TimeoutError)


class Blips:
    """Retries transport failures of one command's calls within a time budget."""

    def __init__(
        self,
        budget_s: float,
        notice: Callable[[str], None] | None = None,
        gone: Callable[[], str | None] | None = None,
    ) -> None:
        self._budget_s = budget_s
        self._notice = notice
        # Why the control plane is away for good (the embedded stack stopped), or None:
        # then there is nothing to wait for.
        self._gone = gone
        self._down_since: float | None = None

    async def call(self, op: Callable[[], Awaitable[T]]) -> T:
        """`op()`, again and again while it fails on transport, until the budget is spent."""
        loop = asyncio.get_running_loop()
        backoff = 0.25
        while True:
            try:
                result = await op()
            except Exception as exc:
                if not is_transport_error(exc):
                    raise
                if self._gone is not None and (why := self._gone()) is not None:
                    raise ControlPlaneUnreachableError(
                        why, "`rgrid watch ID` picks up where this left off once it runs again"
                    ) from exc
                now = loop.time()
                if self._down_since is None:
                    self._down_since = now
                    if self._notice is not None:
                        self._notice(NOTICE)
                if now - self._down_since >= self._budget_s:
                    away = f"{self._budget_s:.0f} s ({_first_line(exc)})"
                    raise ControlPlaneUnreachableError(
                        f"control plane unreachable for {away}",
                        "check `rgrid dev status` (or your Temporal address); "
                        "`rgrid watch ID` picks up where this left off",
                    ) from exc
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            self._down_since = None
            return result


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    return lines[0][:120]
