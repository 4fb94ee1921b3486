"""A node pool's decisions as pure functions of its nodes, the backlog and the time:
how many nodes to add, which to retire, which are dead. Deterministic, so the
NodePoolWorkflow can call them, and unit tests can check them without a server."""

from __future__ import annotations

from datetime import datetime

from rgrid.models.pool import NodeClassConfig, NodeState, PoolNode

LIVE = (NodeState.PROVISIONING, NodeState.READY, NodeState.DRAINING)
# Statuses in which a server can still run an agent (Hetzner's server status values).
# Seconds Temporal's backlog statistic may trail matching (measured here: 1-4 s on a
# busy dev server): a node that became ready this recently counts as not yet claiming.
BACKLOG_STATS_LAG_S = 10
ALIVE_STATUSES = ("initializing", "starting", "running", "migrating", "rebuilding")


def seconds_left_in_hour(created_at: datetime, now: datetime, period_s: int = 3600) -> float:
    """Seconds until the node's next billing period starts (and costs another hour)."""
    elapsed = max(0.0, (now - created_at).total_seconds())
    return period_s - (elapsed % period_s)


def in_retire_window(node: PoolNode, now: datetime, config: NodeClassConfig) -> bool:
    """True when so little of the paid hour remains that keeping the node idle into the
    next one would cost a whole hour more."""
    left = seconds_left_in_hour(node.created_at, now, config.billing_period_s)
    return left <= config.retire_margin_s


def too_old(node: PoolNode, now: datetime, config: NodeClassConfig) -> bool:
    """Past the maximum node age: it drains and goes once idle."""
    return (now - node.created_at).total_seconds() >= config.max_age_s


def should_retire(node: PoolNode, now: datetime, config: NodeClassConfig, backlog: int) -> bool:
    """An idle node goes shortly before its next billing hour unless work waits, and a
    draining (or too old) node goes as soon as it is idle."""
    if node.state not in (NodeState.READY, NodeState.DRAINING):
        return False
    # A node that stopped answering (but whose server runs) earns nothing: its last
    # reported load is not trusted, so it cannot bill on forever.
    if node.in_use > 0 and not silent(node, now, config):
        return False
    if node.state is NodeState.DRAINING or too_old(node, now, config):
        return True
    return backlog == 0 and in_retire_window(node, now, config)


def is_dead(node: PoolNode, now: datetime, config: NodeClassConfig, server_status: str) -> bool:
    """Dead only on two signals: the agent missed its pings for `dead_after_s`, AND the
    API says the server is not running (or is gone: status "missing")."""
    if node.state not in (NodeState.READY, NodeState.DRAINING):
        return False
    return silent(node, now, config) and server_status not in ALIVE_STATUSES


def silent(node: PoolNode, now: datetime, config: NodeClassConfig) -> bool:
    """The node has not answered a ping for `dead_after_s`."""
    seen = node.last_seen or node.ready_at or node.created_at
    return (now - seen).total_seconds() >= config.dead_after_s


def boot_timed_out(node: PoolNode, now: datetime, config: NodeClassConfig) -> bool:
    """A node whose agent never polled within `boot_timeout_s` is given up."""
    return (
        node.state is NodeState.PROVISIONING
        and (now - node.created_at).total_seconds() >= config.boot_timeout_s
    )


def backlog_to_serve(
    seen: int, last_seen: int, fresh: int, now: datetime, gone_at: datetime | None
) -> int:
    """The waiting claims to find slots for. The backlog statistic lags matching: a
    standing backlog counts once two looks agree, new demand (signals) at once; and just
    after a node that took claims was destroyed the statistic still shows those claims,
    so for BACKLOG_STATS_LAG_S only new demand counts."""
    if gone_at is not None and (now - gone_at).total_seconds() < BACKLOG_STATS_LAG_S:
        return fresh
    return max(min(seen, last_seen), fresh)


def nodes_to_create(
    backlog: int, nodes: list[PoolNode], config: NodeClassConfig, now: datetime
) -> int:
    """Nodes to add so that waiting claims find slots: the backlog beyond the slots that
    booting nodes and free ready slots will offer, capped by max_nodes. A node that just
    became ready counts whole: the backlog statistic does not show its claims yet."""
    live = [n for n in nodes if n.state in LIVE]
    coming = sum(n.slots for n in live if n.state is NodeState.PROVISIONING or _just_ready(n, now))
    free = sum(
        max(0, n.slots - n.in_use)
        for n in live
        if n.state is NodeState.READY and not _just_ready(n, now)
    )
    short = backlog - coming - free
    if short <= 0:
        return 0
    wanted = -(-short // max(1, config.slots))
    return max(0, min(wanted, config.max_nodes - len(live)))


def _just_ready(node: PoolNode, now: datetime) -> bool:
    # Draining too: a node drained right after it became ready took the claims the
    # backlog statistic still shows.
    return (
        node.state in (NodeState.READY, NodeState.DRAINING)
        and node.ready_at is not None
        and (now - node.ready_at).total_seconds() < BACKLOG_STATS_LAG_S
    )
