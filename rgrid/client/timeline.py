"""An execution's timeline from its workflow history: each activity (claim a node, then
execute: stage, run and collect; older runs show those three apart) with when it was
scheduled, started and ended, its attempts and how it ended. The ledger keeps only the
outcome; the history keeps the way."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from rgrid.errors import NotFoundError


class Step(BaseModel):
    """One activity of the workflow, or the workflow's own start and end."""

    name: str
    scheduled_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    attempt: int = 1
    outcome: str = "running"  # running | completed | failed | timed out | cancelled
    detail: str = ""

    @property
    def seconds(self) -> float | None:
        """How long it took from being scheduled to its end."""
        if self.ended_at is None:
            return None
        return (self.ended_at - self.scheduled_at).total_seconds()


def _time(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime().replace(tzinfo=UTC)


_ENDS = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: (
        "completed",
        "activity_task_completed_event_attributes",
    ),
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: ("failed", "activity_task_failed_event_attributes"),
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: (
        "timed out",
        "activity_task_timed_out_event_attributes",
    ),
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: (
        "cancelled",
        "activity_task_canceled_event_attributes",
    ),
}


def steps_of(events: list[HistoryEvent]) -> list[Step]:
    """The steps a list of history events describes, in the order they were scheduled."""
    steps: list[Step] = []
    by_scheduled: dict[int, Step] = {}
    for event in events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            steps.append(Step(name="workflow started", scheduled_at=_time(event), outcome=""))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            step = Step(name=attrs.activity_type.name, scheduled_at=_time(event))
            by_scheduled[event.event_id] = step
            steps.append(step)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            if (begun := by_scheduled.get(started.scheduled_event_id)) is not None:
                begun.started_at = _time(event)
                begun.attempt = started.attempt or 1
        elif kind in _ENDS:
            outcome, field = _ENDS[kind]
            attrs = getattr(event, field)
            if (ended := by_scheduled.get(attrs.scheduled_event_id)) is not None:
                ended.ended_at = _time(event)
                ended.outcome = outcome
                if outcome in ("failed", "timed out"):
                    ended.detail = attrs.failure.message
        elif kind in (
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
        ):
            name = EventType.Name(kind).removeprefix("EVENT_TYPE_WORKFLOW_EXECUTION_").lower()
            steps.append(Step(name=f"workflow {name}", scheduled_at=_time(event), outcome=""))
    return steps


async def timeline(client: Client, workflow_id: str) -> list[Step]:
    """The steps of a workflow's latest run."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        events = [event async for event in handle.fetch_history_events()]
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise NotFoundError(
                f"Temporal has no history of {workflow_id!r}", "it may have expired"
            ) from err
        raise
    return steps_of(events)
