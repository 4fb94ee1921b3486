"""The node provider behind a control worker's node pool, and what happens to the pool's
nodes when that worker stops."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import structlog

from rgrid.config import Settings
from rgrid.errors import RgridError
from rgrid.infra.ledger import Ledger
from rgrid.infra.providers import NodeProvider
from rgrid.infra.providers.local import LocalProvider
from rgrid.models.pool import NodeState

log = structlog.get_logger()


def pool_provider(settings: Settings) -> NodeProvider | None:
    """The provider behind the node pool, or None for fixed local agents (which the
    embedded stack's supervisor runs)."""
    if settings.pool_id is None:
        return None
    if settings.provider == "hetzner":
        from rgrid.config_parts import HetznerConfig
        from rgrid.infra.providers.hetzner import HetznerProvider

        return HetznerProvider(HetznerConfig.of(settings))
    # Local pool agents are this worker's children (they die with it).
    return LocalProvider(settings, settings.dev_dir)


async def release_pool_nodes(provider: NodeProvider, ledger: Ledger, settings: Settings) -> None:
    """On a graceful stop: local pool agents stop with this worker; cloud servers are
    deleted only by an embedded stack's sole control worker (nothing would drive them, and
    their runs resume elsewhere when a stack runs again). A replica of a real deployment
    leaves them to the pool, which other replicas keep running."""
    if not (isinstance(provider, LocalProvider) or settings.embedded):
        return
    try:
        async with asyncio.timeout(60):
            for server in await provider.list_nodes(settings.node_class):
                await provider.delete_node(server.server_id)
            now = datetime.now(UTC)
            for node in await ledger.nodes():
                if node.provider == provider.name and node.node_class == settings.node_class:
                    await ledger.save_node(
                        node.model_copy(update={"state": NodeState.DELETED, "deleted_at": now})
                    )
    except (RgridError, TimeoutError) as exc:
        log.warning("pool_nodes_left", error=str(exc), hint="`rgrid nodes` after a restart")
    if isinstance(provider, LocalProvider):
        provider.stop_all()
