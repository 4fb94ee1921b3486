"""Node providers: where node agents come from (local subprocesses, Hetzner Cloud).

A NodePoolWorkflow drives one provider through the activities in
rgrid/activities/provisioning.py; a provider only creates, lists and deletes nodes.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, Field

from rgrid.models.pool import ServerChoice, ServerInfo

# Every node rgrid creates carries these labels; a pool deletes labelled nodes it does
# not know (orphans of a crash), so none bills forever.
MANAGED_LABEL = "rgrid"
CLASS_LABEL = "rgrid-class"
NODE_LABEL = "rgrid-node"


def node_labels(node_class: str, node_id: str | None = None) -> dict[str, str]:
    """rgrid's labels of a node class (and of one node, given its id)."""
    labels = {MANAGED_LABEL: "node", CLASS_LABEL: node_class}
    if node_id is not None:
        labels[NODE_LABEL] = node_id
    return labels


class CreateNode(BaseModel):
    """One node to create: who it is, what it runs on, its slots."""

    node_id: str
    node_class: str
    choice: ServerChoice
    image: str = "ubuntu-24.04"
    slots: int = 2
    ssh_key: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class NodeProvider(Protocol):
    """Creates, lists and deletes nodes; errors are rgrid's (rgrid.errors)."""

    name: str

    async def create_node(self, request: CreateNode) -> ServerInfo:
        """Create a node; its agent starts on its own and polls when ready."""
        ...

    async def list_nodes(self, node_class: str) -> list[ServerInfo]:
        """Every node of the class that carries rgrid's labels, known or not."""
        ...

    async def delete_node(self, server_id: int) -> None:
        """Delete a node; deleting one that is gone is not an error."""
        ...
