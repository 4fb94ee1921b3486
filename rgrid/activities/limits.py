"""The limit watch's activity: one look at spending against the limits (see
LimitWatchWorkflow). The check itself is handed in, so this module stays below the
worker that composes it with the ledger and a Temporal client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from temporalio import activity

from rgrid import names
from rgrid.models.money import CheckLimitsInput, CheckLimitsResult, LimitAlert


class LimitActivities:
    """Runs the spending check the control worker was built with."""

    def __init__(self, check: Callable[[], Awaitable[list[LimitAlert]]]) -> None:
        self._check = check

    @activity.defn(name=names.CHECK_LIMITS)
    async def check_limits(self, _: CheckLimitsInput) -> CheckLimitsResult:
        """Record new crossings and start their alerts; how many were new."""
        return CheckLimitsResult(crossings=len(await self._check()))
