"""Activities a node pool sends to one node's own queue: a ping that reports its load
(the pool's heartbeat of the node) and a drain that makes it take no more claims."""

from __future__ import annotations

from temporalio import activity

from rgrid.activities import names
from rgrid.models.node import NodeActionInput, NodeLoad
from rgrid.worker.leases import LeaseBook


class NodeControlActivities:
    """Answers the pool about one node's slots."""

    def __init__(self, node_id: str, book: LeaseBook) -> None:
        self._node_id = node_id
        self._book = book

    @activity.defn(name=names.PING_NODE)
    async def ping_node(self, request: NodeActionInput) -> NodeLoad:
        return NodeLoad(
            node_id=self._node_id,
            slots=self._book.slots,
            in_use=self._book.in_use,
            draining=self._book.draining,
        )

    @activity.defn(name=names.DRAIN_NODE)
    async def drain_node(self, request: NodeActionInput) -> NodeLoad:
        """Take no more claims; answers the load, so an idle node can go at once."""
        self._book.drain()
        return await self.ping_node(request)
