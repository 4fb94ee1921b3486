"""Reading what a workflow was started with, from its history (for retries)."""

from __future__ import annotations

from typing import TypeVar

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from rgrid.errors import NotFoundError

T = TypeVar("T")


async def started_input(client: Client, workflow_id: str, input_type: type[T]) -> T:
    """The input of the workflow's latest run (after continue-as-new, that run's input)."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        async for event in handle.fetch_history_events():
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            [value] = await client.data_converter.decode(payloads, [input_type])
            return value  # type: ignore[no-any-return]
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise NotFoundError(f"no {workflow_id!r}", "see `rgrid list`") from err
        raise
    raise NotFoundError(f"{workflow_id!r} has no history", "it may have been deleted")
