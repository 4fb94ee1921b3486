"""Which node row an execution ran on, and when it held its slot.

A node id that lives several lives (a local agent `local-1` across stack restarts) keeps
one ledger row per life, `local-1@<life>`; an execution on `local-1` belongs to the life
that spans its start.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime

from rgrid.models.execution import Phase
from rgrid.models.money import RunRecord
from rgrid.models.pool import NodeRecord
from rgrid.money.pricing import NodeBill, SlotUsage

LIFE_SEPARATOR = "@"


def base_node_id(row_id: str) -> str:
    """The agent's node id of a ledger row id (`local-1@01J…` -> `local-1`)."""
    return row_id.split(LIFE_SEPARATOR, 1)[0]


def node_bill(node: NodeRecord) -> NodeBill:
    """The billing facts of a node row."""
    return NodeBill(
        node_id=node.node_id,
        created_at=node.created_at,
        deleted_at=node.deleted_at,
        hourly_price_microns=node.hourly_price_microns,
        slots=max(node.slots, 1),
    )


def usage_of(row: RunRecord | None, now: datetime) -> tuple[datetime, datetime] | None:
    """When an execution held its slot: from start to finish (to now while it runs)."""
    if row is None or row.cached or row.node_id is None or row.started_at is None:
        return None
    started = row.started_at
    if row.finished_at is not None:
        return started, max(row.finished_at, started)
    if Phase(row.phase).terminal:
        return None  # ended without a finish time: nothing to charge
    return started, max(now, started)


class Lives:
    """Finds the node row an execution ran on: the row with its node id, or else the life
    of that id that began last before the execution started."""

    def __init__(self, nodes: list[NodeRecord]) -> None:
        self._exact = {node.node_id for node in nodes}
        self._lives: dict[str, list[tuple[datetime, str]]] = {}
        for node in nodes:
            self._lives.setdefault(base_node_id(node.node_id), []).append(
                (node.created_at, node.node_id)
            )
        for lives in self._lives.values():
            lives.sort()

    def of(self, execution_node: str, started: datetime) -> str | None:
        """The row id, or None when the ledger has no such node."""
        if execution_node in self._exact:
            return execution_node
        lives = self._lives.get(execution_node, [])
        index = bisect_right(lives, started, key=lambda life: life[0])
        return lives[index - 1][1] if index else None


def life_of(execution_node: str, started: datetime, nodes: list[NodeRecord]) -> str | None:
    """The node row an execution ran on (see Lives)."""
    return Lives(nodes).of(execution_node, started)


def usages_of(
    rows: list[RunRecord], nodes: list[NodeRecord], now: datetime
) -> tuple[list[SlotUsage], dict[str, RunRecord]]:
    """The slot usage of each run on a node life the ledger knows, and those runs by id."""
    usages: list[SlotUsage] = []
    by_id: dict[str, RunRecord] = {}
    lives = Lives(nodes)
    for row in rows:
        span = usage_of(row, now)
        if span is None or row.node_id is None:
            continue
        life = lives.of(row.node_id, span[0])
        if life is None:
            continue  # a node the ledger never recorded: nothing to split
        # Built unvalidated: usage_of already guarantees finished_at >= started_at.
        usages.append(
            SlotUsage.model_construct(
                execution_id=row.id, node_id=life, started_at=span[0], finished_at=span[1]
            )
        )
        by_id[row.id] = row
    return usages, by_id


def lives_of(agent: str, nodes: list[NodeRecord]) -> list[NodeRecord]:
    """The node rows of one agent id, one per life."""
    return [n for n in nodes if base_node_id(n.node_id) == agent]
