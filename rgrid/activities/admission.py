"""Admission: the control plane decides whether new work may start, whatever sent it (the
CLI, rgrid.api, the console, a `temporal workflow update` by hand). Run as a local
activity by the execution workflow (a run of its own), the batch workflow (a batch's
start) and the batch's retry_failed update."""

from __future__ import annotations

import structlog
from temporalio import activity

from rgrid import names
from rgrid.activities import costs
from rgrid.config import Settings
from rgrid.errors import RgridError
from rgrid.infra.ledger import Ledger
from rgrid.models.control import AdmitInput, AdmitResult
from rgrid.money import admission

log = structlog.get_logger()


class AdmissionActivities:
    """Spending limits and budgets, read from the ledger and decided by rgrid.money."""

    def __init__(self, ledger: Ledger, settings: Settings) -> None:
        self._ledger = ledger
        self._settings = settings

    @activity.defn(name=names.ADMIT)
    async def admit(self, request: AdmitInput) -> AdmitResult:
        # The limit watch keeps each limit's spend fresh (every limit_check_s); a figure
        # younger than twice that decides, so a run does not price the whole month first.
        found = await costs.limit_statuses(
            self._ledger, project=request.project, max_age_s=2 * self._settings.limit_check_s
        )
        if found:
            await costs.record_crossings(self._ledger, found)
        refusal: RgridError | None = admission.limit_refusal(found, request.what)
        if refusal is None and request.budget_microns is not None:
            estimate = await costs.estimate_runs(
                self._ledger,
                self._settings,
                request.script_sha256,
                request.runs,
                request.parallel,
                request.timeout_s,
                request.node_class,
            )
            refusal = admission.budget_refusal(
                estimate, request.budget_microns, request.script_name
            )
        if refusal is None:
            return AdmitResult()
        log.info("admission_refused", project=request.project, reason=type(refusal).__name__)
        return AdmitResult(refused=type(refusal).__name__, message=refusal.one_line())
