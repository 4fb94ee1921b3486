"""Cancelling many executions at once: select them from the ledger, cancel each workflow,
and wait (bounded) until each has ended."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from rgrid.client.session import Session
from rgrid.models.execution import ExecutionStatus, Phase

CANCEL_AT_ONCE = 20  # requests in flight to Temporal
WAIT_S = 60.0


class Selection(BaseModel):
    """Which executions a bulk cancel takes: not yet ended, and matching every filter."""

    phases: list[Phase] = Field(default_factory=list)  # empty: every live phase
    tags: dict[str, str] = Field(default_factory=dict)
    project: str | None = None
    batch_id: str | None = None

    def matches(self, run: ExecutionStatus) -> bool:
        """True when this selection takes the run."""
        return (
            not run.phase.terminal
            and (not self.phases or run.phase in self.phases)
            and all(run.tags.get(k) == v for k, v in self.tags.items())
            and (self.project is None or run.project == self.project)
            and (self.batch_id is None or run.batch_id == self.batch_id)
        )


async def select(session: Session, selection: Selection) -> list[ExecutionStatus]:
    """The live executions a selection takes, oldest first."""
    live = await (await session.ledger()).live()
    return [run for run in live if selection.matches(run)]


async def cancel_all(session: Session, runs: list[ExecutionStatus]) -> list[ExecutionStatus]:
    """Cancel every run (a batch's own workflow is not touched: only the items chosen);
    returns their states once they ended, or when WAIT_S ran out."""
    client = await session.temporal()
    gate = asyncio.Semaphore(CANCEL_AT_ONCE)

    async def one(run: ExecutionStatus) -> None:
        async with gate:
            try:
                await client.get_workflow_handle(run.execution_id).cancel()
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise

    await asyncio.gather(*(one(run) for run in runs))
    deadline = asyncio.get_running_loop().time() + WAIT_S
    pending = {run.execution_id for run in runs}
    while pending and asyncio.get_running_loop().time() < deadline:
        for execution_id in list(pending):
            described = await client.get_workflow_handle(execution_id).describe()
            if described.status != WorkflowExecutionStatus.RUNNING:
                pending.discard(execution_id)
        if pending:
            await asyncio.sleep(0.5)
    ledger = await session.ledger()
    return [await ledger.get(run.execution_id) for run in runs]
