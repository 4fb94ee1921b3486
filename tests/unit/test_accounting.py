"""Cost reports built from real ledger rows (SQLite) reconcile to the micron."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from hypothesis import example, given, settings
from hypothesis import strategies as st

from rgrid.activities.costs import cost_of_execution, cost_report
from rgrid.infra.ledger import Ledger
from rgrid.models.execution import ExecutionStatus, Phase
from rgrid.models.pool import NodeRecord, NodeState
from rgrid.money.breakdown import group_by
from rgrid.money.pricing import MICRONS_PER_EUR, amortize
from rgrid.money.report import POOL, CostReport
from tests.unit.test_pricing import simulate_fleet

T0 = datetime(2025, 3, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
FAST = settings(max_examples=60, deadline=None)
T = TypeVar("T")


def with_ledger(body: Callable[[Ledger], Awaitable[T]]) -> T:
    async def main() -> T:
        ledger = await Ledger.open("sqlite+aiosqlite://")  # in memory: one per example
        try:
            return await body(ledger)
        finally:
            await ledger.close()

    return asyncio.run(main())


def node_row(
    node_id: str,
    created: timedelta,
    lifetime: timedelta | None,
    price: int,
    slots: int = 1,
    caused_by: str | None = None,
) -> NodeRecord:
    return NodeRecord(
        node_id=node_id,
        slots=slots,
        hourly_price_microns=price,
        state=NodeState.READY if lifetime is None else NodeState.DELETED,
        created_at=T0 + created,
        ready_at=T0 + created,
        deleted_at=None if lifetime is None else T0 + created + lifetime,
        caused_by=caused_by,
    )


def execution_row(
    execution_id: str,
    node_id: str | None,
    start: timedelta,
    length: timedelta | None,
    project: str = "default",
    batch_id: str | None = None,
    cached: bool = False,
) -> ExecutionStatus:
    return ExecutionStatus(
        execution_id=execution_id,
        phase=Phase.RUNNING if length is None else Phase.SUCCEEDED,
        script="job.py",
        project=project,
        batch_id=batch_id,
        node_id=node_id,
        created_at=T0 + start,
        started_at=None if cached else T0 + start,
        finished_at=None if length is None else T0 + start + length,
        cached=cached,
    )


async def store(ledger: Ledger, nodes: list[NodeRecord], executions: list[ExecutionStatus]) -> None:
    for node in nodes:
        await ledger.save_node(node)
    for execution in executions:
        await ledger.upsert(execution)


def assert_reconciles(report: CostReport) -> None:
    assert report.executions_microns + report.idle_microns == report.bill_microns
    assert sum(c.cost_microns for c in report.executions) == report.executions_microns
    assert sum(n.bill_microns for n in report.nodes) == report.bill_microns
    assert all(c.cost_microns >= 0 for c in report.executions)
    assert all(0 <= n.idle_microns <= n.bill_microns for n in report.nodes)
    for by in ("day", "project", "tag", "batch", "script"):
        rows = group_by(report, by)
        assert sum(r.executions_microns + r.idle_microns for r in rows) == report.bill_microns


PRICES = st.one_of(
    st.sampled_from([0, 1, 7, 6000, 999_983, 10 * MICRONS_PER_EUR]),
    st.integers(min_value=0, max_value=10 * MICRONS_PER_EUR),
)


def minutes(low: int, high: int) -> st.SearchStrategy[timedelta]:
    return st.integers(low * 60_000, high * 60_000).map(lambda ms: timedelta(milliseconds=ms))


@st.composite
def ledger_fleets(draw: st.DrawFn) -> tuple[list[NodeRecord], list[ExecutionStatus], datetime]:
    nodes: list[NodeRecord] = []
    for index in range(draw(st.integers(1, 4))):
        lifetime = draw(
            st.one_of(st.none(), st.sampled_from([timedelta(0), HOUR]), minutes(0, 300))
        )
        nodes.append(
            node_row(
                f"n{index}",
                draw(minutes(0, 360)),
                lifetime,
                draw(PRICES),
                draw(st.integers(1, 8)),
                draw(st.sampled_from([None, "batch-a", "batch-b"])),
            )
        )
    # A local agent id living two lives (stack restarted): one row per life.
    if draw(st.booleans()):
        nodes.append(node_row("local-1@a", timedelta(0), HOUR * 2, draw(PRICES), 2))
        nodes.append(node_row("local-1@b", HOUR * 3, None, draw(PRICES), 2))
    executions: list[ExecutionStatus] = []
    for number in range(draw(st.integers(0, 14))):
        host = draw(st.sampled_from([*nodes, None]))
        node_id = None if host is None else host.node_id.split("@")[0]
        offset = host.created_at - T0 if host else timedelta(0)
        executions.append(
            execution_row(
                f"exec-{number:02d}",
                node_id,
                offset + draw(minutes(-30, 300)),
                draw(st.one_of(st.none(), minutes(0, 180))),
                project=draw(st.sampled_from(["default", "geo"])),
                batch_id=draw(st.sampled_from([None, "batch-a", "batch-b"])),
                cached=host is None,
            )
        )
    return nodes, executions, T0 + draw(minutes(0, 720))


@FAST
@given(ledger_fleets())
def test_reports_from_ledger_rows_reconcile_to_the_micron(
    fleet: tuple[list[NodeRecord], list[ExecutionStatus], datetime],
) -> None:
    nodes, executions, now = fleet

    async def body(ledger: Ledger) -> None:
        await store(ledger, nodes, executions)
        report = await cost_report(ledger, None, None, now)
        assert_reconciles(report)
        assert all(c.cost_microns == 0 for c in report.executions if c.cached)
        for project in ("default", "geo"):
            part = await cost_report(ledger, None, None, now, project=project)
            assert part.executions_microns + part.idle_microns == part.bill_microns
            assert part.bill_microns <= report.bill_microns
            for by in ("day", "project", "tag", "batch", "script"):
                rows = group_by(part, by)
                assert sum(r.executions_microns + r.idle_microns for r in rows) == (
                    part.bill_microns
                )

    with_ledger(body)


@FAST
@given(ledger_fleets(), minutes(0, 720))
def test_adjacent_windows_add_up_to_the_whole(
    fleet: tuple[list[NodeRecord], list[ExecutionStatus], datetime], cut: timedelta
) -> None:
    nodes, executions, now = fleet

    async def body(ledger: Ledger) -> None:
        await store(ledger, nodes, executions)
        whole = await cost_report(ledger, T0 - HOUR, T0 + 24 * HOUR, now)
        before = await cost_report(ledger, T0 - HOUR, T0 + cut, now)
        after = await cost_report(ledger, T0 + cut, T0 + 24 * HOUR, now)
        for report in (whole, before, after):
            assert_reconciles(report)
        assert before.bill_microns + after.bill_microns == whole.bill_microns
        assert before.idle_microns + after.idle_microns == whole.idle_microns

    with_ledger(body)


@FAST
@given(ledger_fleets())
# The report's default end once stopped an hour after the latest creation: a node whose
# rows say it lives past now (1 h 1 ms here) lost its second hour from the report, while
# the execution's own cost counted it (10,000,003 against 10,000,000).
@example(
    (
        [node_row("n1", timedelta(0), HOUR + timedelta(milliseconds=1), 10 * MICRONS_PER_EUR)],
        [execution_row("exec-00", "n1", timedelta(0), HOUR + timedelta(milliseconds=1))],
        T0,
    )
)
def test_an_executions_own_cost_matches_the_report(
    fleet: tuple[list[NodeRecord], list[ExecutionStatus], datetime],
) -> None:
    nodes, executions, now = fleet

    async def body(ledger: Ledger) -> None:
        await store(ledger, nodes, executions)
        report = await cost_report(ledger, None, None, now)
        assert_reconciles(report)
        in_report = {c.execution_id: c for c in report.executions}
        for execution in executions:
            alone = await cost_of_execution(ledger, execution.execution_id, now)
            listed = in_report.get(execution.execution_id)
            assert alone.cost_microns == (listed.cost_microns if listed else 0)
            assert alone.provisional == (listed.provisional if listed else False)

    with_ledger(body)


def test_a_thousand_run_fleet_reconciles_through_the_ledger() -> None:
    bills, usages, now = simulate_fleet(seed=7, runs=1000)
    nodes = [
        NodeRecord(
            node_id=b.node_id,
            slots=b.slots,
            hourly_price_microns=b.hourly_price_microns,
            created_at=b.created_at,
            deleted_at=b.deleted_at,
            state=NodeState.DELETED if b.deleted_at else NodeState.READY,
        )
        for b in bills
    ]
    executions = [
        ExecutionStatus(
            execution_id=u.execution_id,
            phase=Phase.SUCCEEDED,
            node_id=u.node_id,
            created_at=u.started_at,
            started_at=u.started_at,
            finished_at=u.finished_at,
            project=["default", "geo", "ml"][int(u.execution_id[-4:]) % 3],
        )
        for u in usages
    ]

    async def body(ledger: Ledger) -> None:
        await store(ledger, nodes, executions)
        report = await cost_report(ledger, None, None, now)
        assert len(report.executions) == 1000
        assert_reconciles(report)
        # The ledger path gives exactly what the in-memory split gives.
        expected = amortize(bills, usages, now)
        assert {c.execution_id: c.cost_microns for c in report.executions} == (
            expected.per_execution
        )
        assert {c.execution_id for c in report.executions if c.provisional} == (
            expected.provisional_executions
        )
        assert report.bill_microns == sum(expected.bill_per_node.values())

    with_ledger(body)


def test_idle_goes_to_the_batch_that_caused_the_node_and_the_rest_to_the_pool() -> None:
    nodes = [
        node_row("n-batch", timedelta(0), HOUR, 6000, slots=2, caused_by="batch-x"),
        node_row("n-pool", timedelta(0), HOUR, 6000, slots=1),
    ]
    executions = [
        execution_row("e1", "n-batch", timedelta(0), HOUR / 2, batch_id="batch-x"),
        execution_row("e2", "n-pool", timedelta(0), HOUR / 4, project="geo"),
    ]

    async def body(ledger: Ledger) -> None:
        await store(ledger, nodes, executions)
        report = await cost_report(ledger, None, None, T0 + 2 * HOUR)
        assert {c.execution_id: c.cost_microns for c in report.executions} == {
            "e1": 1500,  # half an hour of one of two slots: a quarter of 6000
            "e2": 1500,
        }
        assert report.idle_by_batch == {"batch-x": 4500, POOL: 4500}
        by_batch = {g.key: g for g in group_by(report, "batch")}
        assert by_batch["batch-x"].executions_microns == 1500
        assert by_batch["batch-x"].idle_microns == 4500
        assert by_batch[POOL].idle_microns == 4500
        assert not report.provisional

    with_ledger(body)


def test_a_cost_is_provisional_until_its_hour_closes() -> None:
    nodes = [node_row("n1", timedelta(0), None, 3_600_000)]
    executions = [execution_row("e1", "n1", timedelta(minutes=10), timedelta(minutes=10))]

    async def body(ledger: Ledger) -> None:
        await store(ledger, nodes, executions)
        during = await cost_of_execution(ledger, "e1", T0 + timedelta(minutes=30))
        after = await cost_of_execution(ledger, "e1", T0 + timedelta(minutes=61))
        assert during.provisional and not after.provisional
        assert during.cost_microns == after.cost_microns == 600_000
        assert after.node_hours == 1

    with_ledger(body)


def test_an_execution_on_a_restarted_local_node_is_billed_to_the_life_it_ran_in(
    tmp_path: Path,
) -> None:
    nodes = [
        node_row("local-1@first", timedelta(0), HOUR, 1000),
        node_row("local-1@second", 2 * HOUR, HOUR, 9000),
    ]
    executions = [execution_row("e1", "local-1", 2 * HOUR, HOUR)]

    async def body(ledger: Ledger) -> None:
        await store(ledger, nodes, executions)
        cost = await cost_of_execution(ledger, "e1", T0 + 5 * HOUR)
        assert cost.node_id == "local-1@second" and cost.cost_microns == 9000

    with_ledger(body)
