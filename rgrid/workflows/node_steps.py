"""How an execution reads a node's failures: which mean a lost node, and how a step
after the script started is asked of the same node again first. Deterministic (only
workflow APIs), so the ExecutionWorkflow calls it directly."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError, TimeoutType

with workflow.unsafe.imports_passed_through():
    from rgrid.errors import Failure

T = TypeVar("T")

# Work pinned to a node must start promptly: a node that holds our lease polls its queue.
NODE_PICKUP = timedelta(seconds=30)
# After the script started, a Temporal or control-plane outage times steps out too, and
# the node keeps the run and its result (activities/runs.py): moving the item elsewhere
# would run the script twice. So a timed-out step is asked of the same node again; the
# node is lost only when it stops taking its tasks this often, or after this many tries.
SAME_NODE_RETRIES = 3
SAME_NODE_MAX_TRIES = 10


def repeat_pickup(heartbeat_timeout_s: int) -> timedelta:
    """How long a step asked of the same node again may wait to be picked up: a node
    back from an outage polls again within seconds; a dead one never does."""
    return timedelta(seconds=max(10, 2 * heartbeat_timeout_s))


async def on_same_node(step: Callable[[timedelta], Awaitable[T]], heartbeat_timeout_s: int) -> T:
    """`step(schedule_to_start)` until it answers; a timeout asks the same node again."""
    unpicked = 0  # schedule-to-start timeouts: the node did not poll
    tries = 0
    again = repeat_pickup(heartbeat_timeout_s)
    while True:
        try:
            return await step(again if tries else NODE_PICKUP)
        except ActivityError as err:
            cause = err.cause
            if not isinstance(cause, TimeoutError):
                raise
            tries += 1
            unpicked += cause.type is TimeoutType.SCHEDULE_TO_START
            # A node that takes the task but never heartbeats is bounded too.
            if unpicked > SAME_NODE_RETRIES or tries > SAME_NODE_MAX_TRIES:
                raise
            workflow.logger.warning("node step timed out, asking the node again: %s", err)


def node_lost(err: ActivityError) -> bool:
    """The node stopped answering (a timeout) or gave the slot away (LeaseLost)."""
    cause = err.cause
    if isinstance(cause, TimeoutError):
        return True  # schedule-to-start (node gone) or heartbeat (node died mid-run)
    return isinstance(cause, ApplicationError) and cause.type == Failure.LEASE_LOST


def environment_broken(err: ActivityError) -> bool:
    """rgrid's environment on the node failed before the script ran (EnvironmentBroken)."""
    cause = err.cause
    return isinstance(cause, ApplicationError) and cause.type == Failure.ENVIRONMENT_BROKEN


def not_served(err: ActivityError) -> bool:
    """The node's worker does not serve this activity (an agent of an older rgrid)."""
    cause = err.cause
    return (
        isinstance(cause, ApplicationError)
        and cause.type == "NotFoundError"  # the SDK's type for an unregistered activity
        and "is not registered on this worker" in cause.message
    )
