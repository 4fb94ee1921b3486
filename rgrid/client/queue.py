"""Where waiting runs stand: their order of dispatch, positions, the backlog per class,
priority and project, bounds on waiting work, and the fairness weights.

Temporal's matching decides the real order: priority first (1 before 5), then, within a
priority, a share of dispatches per project in proportion to its weight, oldest first
inside a project. The order here replays that rule over the ledger's waiting runs, so
positions are estimates; the counts of pollers and the dispatch rate are Temporal's.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from rgrid import names
from rgrid.client.session import Session
from rgrid.errors import UserInputError
from rgrid.models.execution import ExecutionStatus


class QueueGroup(BaseModel):
    """Waiting runs of one node class, priority and project."""

    node_class: str
    priority: int
    project: str
    waiting: int
    weight: float = 1.0


class QueueReport(BaseModel):
    """What `rgrid queue` shows: the groups, and Temporal's view of each class's queue."""

    groups: list[QueueGroup] = Field(default_factory=list)
    pollers: dict[str, int] = Field(default_factory=dict)  # node class -> polling nodes
    dispatch_per_s: dict[str, float] = Field(default_factory=dict)
    weights: dict[str, dict[str, float]] = Field(default_factory=dict)


class Standing(BaseModel):
    """Where one waiting run stands (an estimate: see the module's docstring)."""

    position: int  # 1: claimed next
    waiting: int  # runs of its class waiting in all
    pollers: int  # nodes of its class polling for claims now
    eta_s: float | None = None  # from the queue's recent dispatch rate, when it has one


def dispatch_order(
    waiting: list[ExecutionStatus], weights: dict[str, float]
) -> list[ExecutionStatus]:
    """Waiting runs of one class in the order Temporal's matching would dispatch them:
    by priority, then weighted round-robin across projects (stride scheduling: the
    project that has had the least service per unit of weight goes next)."""
    ordered: list[ExecutionStatus] = []
    for priority in sorted({run.priority for run in waiting}):
        lanes: dict[str, list[ExecutionStatus]] = defaultdict(list)
        for run in sorted(waiting, key=_age):
            if run.priority == priority:
                lanes[run.project].append(run)
        served = {project: 0.0 for project in lanes}
        while lanes:
            project = min(lanes, key=lambda p: (served[p], p))
            ordered.append(lanes[project].pop(0))
            served[project] += 1 / max(weights.get(project, 1.0), 1e-9)
            if not lanes[project]:
                del lanes[project]
    return ordered


async def waiting_in_order(session: Session, node_class: str) -> list[ExecutionStatus]:
    """The class's waiting runs, next to be claimed first."""
    waiting = await (await session.ledger()).waiting(node_class)
    return dispatch_order(waiting, await weights_of(session, node_class))


async def standing(session: Session, status: ExecutionStatus) -> Standing | None:
    """Where a waiting run stands in its class's queue; None once it is not waiting."""
    if status.phase.value != "queued":
        return None
    ordered = await waiting_in_order(session, status.node_class)
    ids = [run.execution_id for run in ordered]
    if status.execution_id not in ids:
        return None
    from rgrid.infra.task_queues import describe_queue

    view = await describe_queue(
        await session.temporal(), names.shared_node_queue(status.node_class)
    )
    position = ids.index(status.execution_id) + 1
    eta = position / view.dispatch_per_s if view.dispatch_per_s > 0 else None
    return Standing(position=position, waiting=len(ids), pollers=view.pollers, eta_s=eta)


async def queue_report(session: Session) -> QueueReport:
    """The backlog per class, priority and project, with Temporal's view of each queue."""
    from rgrid.infra.task_queues import describe_queue

    waiting = await (await session.ledger()).waiting()
    counts: dict[tuple[str, int, str], int] = defaultdict(int)
    for run in waiting:
        counts[(run.node_class, run.priority, run.project)] += 1
    report = QueueReport()
    for node_class in sorted({session.settings.node_class, *(k[0] for k in counts)}):
        view = await describe_queue(await session.temporal(), names.shared_node_queue(node_class))
        report.pollers[node_class] = view.pollers
        report.dispatch_per_s[node_class] = view.dispatch_per_s
        report.weights[node_class] = view.weights
    report.groups = [
        QueueGroup(
            node_class=node_class,
            priority=priority,
            project=project,
            waiting=n,
            weight=report.weights.get(node_class, {}).get(project, 1.0),
        )
        for (node_class, priority, project), n in sorted(counts.items())
    ]
    return report


async def weights_of(session: Session, node_class: str) -> dict[str, float]:
    """The fairness weights the class's queue applies (overrides; 1.0 for the rest)."""
    from rgrid.infra.task_queues import describe_queue

    view = await describe_queue(await session.temporal(), names.shared_node_queue(node_class))
    return view.weights


async def set_weights(
    session: Session, weights: dict[str, float], unset: list[str], node_class: str | None = None
) -> dict[str, float]:
    """Change fairness weights live; waiting claims follow them at once."""
    from rgrid.infra.task_queues import set_fairness_weights

    for project, weight in weights.items():
        if not 0 < weight <= 1000:
            raise UserInputError(
                f"weight {weight:g} for {project!r} is out of range", "use a number in (0, 1000]"
            )
    queue = names.shared_node_queue(node_class or session.settings.node_class)
    return await set_fairness_weights(await session.temporal(), queue, weights, unset)


async def check_room(session: Session, project: str, adding: int) -> None:
    """Refuse, before anything is uploaded or started, work that would take the waiting
    runs past a bound (RGRID_MAX_QUEUED, RGRID_MAX_QUEUED_PER_PROJECT)."""
    settings = session.settings
    bounded = settings.max_queued > 0 or project in settings.max_queued_per_project
    if not bounded:
        return
    waiting = await (await session.ledger()).waiting()
    mine = sum(1 for run in waiting if run.project == project)
    checks = [(len(waiting), settings.max_queued, "RGRID_MAX_QUEUED", "runs wait")]
    if project in settings.max_queued_per_project:
        checks.append(
            (
                mine,
                settings.max_queued_per_project[project],
                "RGRID_MAX_QUEUED_PER_PROJECT",
                f"runs of project {project!r} wait",
            )
        )
    for count, bound, setting, what in checks:
        if bound > 0 and count + adding > bound:
            raise UserInputError(
                f"the queue is full: {count} {what} and the bound is {bound} ({setting}); "
                f"this would add {adding}",
                "wait for waiting runs to start, or raise the bound",
            )


def _age(run: ExecutionStatus) -> tuple[datetime, str]:
    return (run.created_at or datetime.min.replace(tzinfo=UTC), run.execution_id)
