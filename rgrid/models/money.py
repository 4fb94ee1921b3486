"""Money's plain inputs and outputs that cross into the ledger: spending limits, their
alerts and the webhooks that carry them, and the execution columns accounting reads.

Every field added later needs a default, so histories recorded by running workflows
still decode (STYLE.md rule 1).
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from pydantic import BaseModel, Field

ALL_PROJECTS = "*"  # the project of a limit on everything


class SpendingLimit(BaseModel):
    """A monthly limit on a project's spend (or everything's), and where to alert."""

    project: str = ALL_PROJECTS
    amount_microns: int
    period: str = "month"
    alert_at_percent: int = 80
    webhook: str | None = None


class KeptSpend(BaseModel):
    """A limit and the month's spend last computed for it (kept so commands read it fresh)."""

    limit: SpendingLimit
    spent_microns: int = 0
    checked_at: datetime | None = None


class RunRecord(NamedTuple):
    """The columns of an execution row that accounting reads (times in UTC); a tuple, so a
    month's rows load fast."""

    id: str
    phase: str
    node_id: str | None
    started_at: datetime | None
    finished_at: datetime | None
    cached: bool
    project: str
    batch_id: str | None
    script: str
    tags_json: str
    created_at: datetime | None


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
