"""How many runs can go at once: the slots of the nodes that exist or may be made, so
what a batch, its bar and its estimate show is what will happen."""

from __future__ import annotations

from dataclasses import dataclass

from rgrid.config import Settings


@dataclass(frozen=True)
class Parallelism:
    """The parallelism asked for, the one the nodes allow, and why they differ."""

    asked: int
    effective: int
    reason: str | None = None  # one line, set when effective < asked


def slot_capacity(settings: Settings) -> tuple[int, str]:
    """The most slots this setup's nodes can offer at once, and where that number is set."""
    if settings.pool_id is None:  # fixed local nodes
        slots = settings.local_nodes * settings.local_slots
        return slots, (
            f"{settings.local_nodes} local node(s) with {settings.local_slots} slot(s) each "
            "(RGRID_LOCAL_NODES, RGRID_LOCAL_SLOTS)"
        )
    slots = settings.max_nodes * settings.node_slots
    return slots, (
        f"at most {settings.max_nodes} node(s) with {settings.node_slots} slot(s) each "
        "(RGRID_MAX_NODES, RGRID_NODE_SLOTS)"
    )


def effective_parallel(settings: Settings, asked: int) -> Parallelism:
    """`asked`, capped at the slots the nodes can offer."""
    slots, where = slot_capacity(settings)
    if asked <= slots or slots < 1:
        return Parallelism(asked, asked)
    reason = f"parallel {slots}, not {asked}: the nodes allow {slots} at once, {where}"
    return Parallelism(asked, slots, reason)
