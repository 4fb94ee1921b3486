"""Spending limits' alerts and the webhooks that carry them.

Every field added later needs a default, so histories recorded by running workflows
still decode (STYLE.md rule 1).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class LimitAlert(BaseModel):
    """A spending limit crossed a threshold: the AlertWorkflow's input (one per crossing)."""

    key: str  # names the limit, its period and the threshold; the workflow id derives from it
    project: str  # "*": the limit on everything
    threshold_percent: int
    spent_microns: int
    limit_microns: int
    period: str = "month"
    period_start: datetime
    currency: str = "EUR"
    webhook: str | None = None


class WebhookInput(BaseModel):
    url: str
    payload: dict[str, object] = Field(default_factory=dict)


class LimitWatchInput(BaseModel):
    """The limit watch's pace: how often it looks at spending against the limits."""

    every_s: float = 30.0


class CheckLimitsInput(BaseModel):
    pass


class CheckLimitsResult(BaseModel):
    crossings: int = 0  # crossings first noticed by this check
