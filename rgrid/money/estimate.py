"""What a run (or a batch) will cost, before anything starts.

From the recorded durations of earlier successful runs of the same script (by content
hash, read from the ledger by the caller): the median gives the estimate, the 90th
percentile its high end. A run's share is price x slot-time / (slots x 1 h), as the
amortization charges it; a batch of N costs N shares. If nodes must be started for the
work, their bill follows the billing-hour rule (every started hour counts), shown beside
it. With no history the statement says what was assumed: every run uses its whole
timeout, an upper bound.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from rgrid.models.pool import NodeRecord
from rgrid.money.pricing import MS_PER_HOUR

HISTORY_LIMIT = 200  # the newest runs say most about the script as it is now


class NodeClassPrice(BaseModel):
    """What a slot of a node class costs, and where that figure came from."""

    node_class: str
    hourly_price_microns: int
    slots: int
    currency: str = "EUR"
    source: str


class Estimate(BaseModel):
    """A cost estimate in microns, how it was derived, and how uncertain it is."""

    script_sha256: str
    runs: int
    parallel: int
    price: NodeClassPrice
    history: int = 0  # earlier runs the durations come from
    median_ms: int
    p90_ms: int
    expected_microns: int  # runs x share at the median duration
    high_microns: int  # at the 90th percentile
    nodes: int  # nodes the parallelism needs
    wall_ms: int  # how long the work takes at that parallelism (median)
    bill_if_new_nodes_microns: int  # if those nodes are started for it: started hours
    derivation: list[str] = Field(default_factory=list)


def class_price(
    every: list[NodeRecord], node_class: str, local_hourly_price_microns: int, local_slots: int
) -> NodeClassPrice:
    """The price of the newest node of the class among the ledger's node rows, else the
    local setting."""
    nodes = [n for n in every if n.node_class == node_class]
    if nodes:
        newest = max(nodes, key=lambda n: n.created_at)
        return NodeClassPrice(
            node_class=node_class,
            hourly_price_microns=newest.hourly_price_microns,
            slots=max(newest.slots, 1),
            currency=newest.currency,
            source=f"node {newest.node_id} ({newest.provider})",
        )
    return NodeClassPrice(
        node_class=node_class,
        hourly_price_microns=local_hourly_price_microns,
        slots=max(local_slots, 1),
        source="RGRID_LOCAL_HOURLY_PRICE_MICRONS and RGRID_LOCAL_SLOTS",
    )


def percentile_ms(sorted_ms: list[int], percent: int) -> int:
    """Nearest-rank percentile of sorted durations."""
    rank = max(-(-percent * len(sorted_ms) // 100), 1)
    return sorted_ms[rank - 1]


def build_estimate(
    script_sha256: str,
    runs: int,
    parallel: int,
    price: NodeClassPrice,
    history_ms: list[int],
    timeout_s: int,
) -> Estimate:
    """The estimate from durations and a price; integer microns throughout."""
    ordered = sorted(history_ms)
    if ordered:
        median, p90 = percentile_ms(ordered, 50), percentile_ms(ordered, 90)
        basis = (
            f"from {len(ordered)} earlier successful run(s) of this script: "
            f"median {median / 1000:.1f} s, 90th percentile {p90 / 1000:.1f} s"
        )
    else:
        median = p90 = timeout_s * 1000
        basis = (
            f"no earlier runs of this script: assumed each run uses its whole timeout "
            f"({timeout_s} s), so this is an upper bound"
        )
    capacity = price.slots * MS_PER_HOUR
    per_run = price.hourly_price_microns * median // capacity
    per_run_high = price.hourly_price_microns * p90 // capacity
    concurrent = max(min(parallel, runs), 1)
    nodes = -(-concurrent // price.slots)
    wall = -(-runs // concurrent) * median
    hours = max(-(-wall // MS_PER_HOUR), 1)
    return Estimate(
        script_sha256=script_sha256,
        runs=runs,
        parallel=parallel,
        price=price,
        history=len(ordered),
        median_ms=median,
        p90_ms=p90,
        expected_microns=runs * per_run,
        high_microns=runs * per_run_high,
        nodes=nodes,
        wall_ms=wall,
        bill_if_new_nodes_microns=nodes * hours * price.hourly_price_microns,
        derivation=[
            basis,
            f"{runs} run(s), {concurrent} at a time, on {price.node_class!r} nodes of "
            f"{price.slots} slot(s) at {price.hourly_price_microns} microns/hour "
            f"(price from {price.source})",
            "each run pays its slot-time share of the node's hour: "
            f"price x duration / ({price.slots} slots x 1 h)",
            f"if {nodes} node(s) must be started for it: {hours} started billing hour(s) each",
        ],
    )
