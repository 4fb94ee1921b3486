"""The ledger rows of the embedded stack's fixed local agents: one row per life of the
stack (`local-1@<life>`), billed from its start to its stop."""

from __future__ import annotations

from datetime import UTC, datetime

from ulid import ULID

from rgrid.config import Settings
from rgrid.infra.ledger import Ledger
from rgrid.models.pool import NodeRecord, NodeState
from rgrid.money.lives import LIFE_SEPARATOR, base_node_id


async def open_lives(settings: Settings, node_ids: list[str]) -> list[NodeRecord]:
    """Record the stack's agents as starting a life now."""
    ledger = await Ledger.open(settings.effective_database_url)
    try:
        return await record_local_nodes(ledger, settings, node_ids)
    finally:
        await ledger.close()


async def close_lives(settings: Settings, lives: list[NodeRecord]) -> None:
    """The stack stops: close its agents' lives."""
    if not lives:
        return
    ledger = await Ledger.open(settings.effective_database_url)
    try:
        await close_local_nodes(ledger, lives)
    finally:
        await ledger.close()


async def record_local_nodes(
    ledger: Ledger, settings: Settings, node_ids: list[str]
) -> list[NodeRecord]:
    """Bill this stack's agents from now (one ledger row per life, `local-1@<life>`), after
    closing the rows a stack that died without stopping left open."""
    now = datetime.now(UTC)
    for node in await ledger.nodes():
        if node.provider == "local" and node.deleted_at is None:
            # Its end is unknown: bill it to its last sign of life, the latest run on it.
            runs = await ledger.runs_on({base_node_id(node.node_id)}, node.created_at, now)
            seen = [t for r in runs if (t := r.finished_at or r.started_at)]
            last = max([node.ready_at or node.created_at, *seen])
            await ledger.save_node(
                node.model_copy(update={"state": NodeState.DELETED, "deleted_at": last})
            )
    life = str(ULID()).lower()
    lives = [
        NodeRecord(
            node_id=f"{node_id}{LIFE_SEPARATOR}{life}",
            provider="local",
            node_class=settings.node_class,
            slots=settings.local_slots,
            hourly_price_microns=settings.local_hourly_price_microns,
            state=NodeState.READY,
            created_at=now,
            ready_at=now,
        )
        for node_id in node_ids
    ]
    for record in lives:
        await ledger.save_node(record)
    return lives


async def close_local_nodes(ledger: Ledger, lives: list[NodeRecord]) -> None:
    """The stack stops: its agents bill no more."""
    now = datetime.now(UTC)
    for record in lives:
        await ledger.save_node(
            record.model_copy(update={"state": NodeState.DELETED, "deleted_at": now})
        )
