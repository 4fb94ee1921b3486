"""What `rgrid nodes` shows and does: the ledger's node rows, with live slot use from the
node pool when one runs; drain and destroy go to the pool as signals."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel
from temporalio.client import Client
from temporalio.service import RPCError

from rgrid.client.session import Session
from rgrid.errors import NotFoundError, UserInputError
from rgrid.models.node import NodeActionInput
from rgrid.models.pool import NodeRecord, PoolStatus
from rgrid.money.pricing import started_billing_hours


class NodeView(BaseModel):
    """One line of `rgrid nodes`."""

    node: NodeRecord
    age_s: float
    billed_hours: int
    slots_used: int | None = None  # None: no running pool knows it


async def pool_status(client: Client, pool_id: str) -> PoolStatus | None:
    """The pool's live view, or None when no pool runs."""
    try:
        return await client.get_workflow_handle(pool_id).query("status", result_type=PoolStatus)
    except RPCError:
        return None


async def list_nodes(session: Session, include_deleted: bool = False) -> list[NodeView]:
    """Nodes from the ledger, oldest first, with slots in use where the pool knows them."""
    records = await (await session.ledger()).nodes(include_deleted=include_deleted)
    used: dict[str, int] = {}
    pool_id = session.settings.pool_id
    if pool_id is not None and any(r.deleted_at is None for r in records):
        status = await pool_status(await session.temporal(), pool_id)
        used = {n.node_id: n.in_use for n in status.nodes} if status else {}
    now = datetime.now(UTC)
    return [
        NodeView(
            node=record,
            age_s=((record.deleted_at or now) - record.created_at).total_seconds(),
            billed_hours=started_billing_hours(
                record.created_at, max(record.deleted_at or now, record.created_at)
            ),
            slots_used=used.get(record.node_id),
        )
        for record in records
    ]


async def signal_pool(session: Session, node_id: str, action: str) -> None:
    """Ask the node pool to drain or destroy one of its nodes."""
    pool_id = session.settings.pool_id
    if pool_id is None:
        raise UserInputError(
            "local nodes are not managed by a node pool",
            "stop them with `rgrid dev stop`; pools run with RGRID_PROVIDER=hetzner",
        )
    client = await session.temporal()
    status = await pool_status(client, pool_id)
    if status is None or node_id not in {n.node_id for n in status.nodes}:
        raise NotFoundError(f"the node pool has no node {node_id!r}", "see `rgrid nodes`")
    await client.get_workflow_handle(pool_id).signal(action, NodeActionInput(node_id=node_id))
