"""The nodes table: every node rgrid started, alive or gone; what it bills comes from here."""

from __future__ import annotations

from sqlalchemy import ColumnElement
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rgrid.infra.ledger.base import LedgerPart
from rgrid.infra.ledger.tables import NodeRow
from rgrid.models.pool import NodeRecord, NodeState


def _not_deleted() -> ColumnElement[bool]:
    return col(NodeRow.state) != NodeState.DELETED.value


class NodeRows(LedgerPart):
    """Reads and writes node rows."""

    async def save_node(self, node: NodeRecord) -> None:
        """Create or update a node's row; a deleted node is never brought back."""
        values = {"id": node.node_id, **node.model_dump(exclude={"node_id"})}
        values["state"] = node.state.value
        await self._upsert(NodeRow, values, _not_deleted, where_key="not deleted")

    async def nodes(self, include_deleted: bool = False) -> list[NodeRecord]:
        """Nodes, oldest first; only the live ones unless asked."""
        query = select(NodeRow).order_by(col(NodeRow.created_at))
        if not include_deleted:
            query = query.where(NodeRow.state != NodeState.DELETED.value)
        async with AsyncSession(self.engine) as session:
            rows = (await session.exec(query)).all()
        return [row.to_record() for row in rows]
