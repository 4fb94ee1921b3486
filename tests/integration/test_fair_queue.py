"""The queue on a real dev server configured as rgrid ships it (temporal-dev.yaml: the new
matcher, fairness, one partition), one node of one slot: priority, per-project fairness
and live weights, positions, the bound on waiting work, and bulk cancel.

Every test holds the slot with a blocker (a script that waits for the test's loopback
HTTP endpoint), queues its runs behind it, waits until Temporal holds all their claims,
then frees the slot and reads the order in which the runs started."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from ulid import ULID

from rgrid import names
from rgrid.client import bulk_cancel, queue, submit
from rgrid.client.session import Session
from rgrid.config import Settings
from rgrid.errors import UserInputError
from rgrid.infra.ledger import Ledger
from rgrid.infra.storage.local import LocalStorage
from rgrid.infra.task_queues import describe_queue
from rgrid.models.execution import ExecutionStatus, Phase
from rgrid.names import SEARCH_ATTRIBUTES
from rgrid.worker.control import build_control_worker
from rgrid.worker.dev import temporal_binary
from tests.integration.conftest import CODEC_KEYS, CONVERTER, agent

pytestmark = pytest.mark.integration


def shipped_dynamic_config() -> list[str]:
    config = yaml.safe_load(resources.files("rgrid").joinpath("temporal-dev.yaml").read_text())
    args = []
    for key, value in config["dynamic_config"].items():
        args += ["--dynamic-config-value", f"{key}={str(value).lower()}"]
    return args


@pytest.fixture(scope="module")
async def fair_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=CONVERTER,
        dev_server_extra_args=shipped_dynamic_config(),
        search_attributes=list(SEARCH_ATTRIBUTES),
        ui=False,
    )
    async with env:
        yield env


@pytest.fixture(scope="module")
async def home(fair_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("fair-home")
    ledger = await Ledger.open(f"sqlite+aiosqlite:///{root / 'ledger.db'}")
    async with build_control_worker(
        fair_env.client,
        ledger,
        LocalStorage(root / "storage"),
        Settings(home=root, codec_key=CODEC_KEYS.export()),
    ):
        yield root
    await ledger.close()


@pytest.fixture
def settings(fair_env: WorkflowEnvironment, home: Path, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path,
        temporal_address=fair_env.client.service_client.config.target_host,
        database_url=f"sqlite+aiosqlite:///{home / 'ledger.db'}",
        storage_url=(home / "storage").as_uri(),
        node_class=f"fair-{str(ULID()).lower()}",
        heartbeat_timeout_s=5,
        codec_key=CODEC_KEYS.export(),
    )


@contextlib.asynccontextmanager
async def gate() -> AsyncIterator[tuple[int, asyncio.Event]]:
    """A loopback endpoint that answers once the event is set: the blocker waits on it."""
    opened = asyncio.Event()

    async def wait(_: web.Request) -> web.Response:
        await opened.wait()
        return web.Response(text="go")

    app = web.Application()
    app.router.add_get("/", wait)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield port, opened
    finally:
        opened.set()
        await runner.cleanup()


class Runs:
    """Starts runs of one script for one node class, as `rgrid run` would."""

    def __init__(self, settings: Settings, tmp_path: Path) -> None:
        self.settings, self.tmp_path = settings, tmp_path
        self.session = Session(settings)

    async def start(
        self, body: str, project: str = "default", priority: int = 3, **tags: str
    ) -> WorkflowHandle[object, ExecutionStatus]:
        script = self.tmp_path / f"job-{ULID()}.py"
        script.write_text(body + "# rgrid: no-cache\n")
        session = Session(self.settings.model_copy(update={"project": project}))
        request = submit.RunRequest(script=script, priority=priority, tags=tags)
        spec, _ = await submit.prepare(session, request, self.tmp_path)
        handle = await submit.start(session, spec)
        await session.close()
        return handle

    async def blocker(self, port: int) -> WorkflowHandle[object, ExecutionStatus]:
        handle = await self.start(
            f"import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/').read()\n",
            project="blocker",
        )
        async with asyncio.timeout(60):
            while (await handle.query("status", result_type=ExecutionStatus)).phase in (
                Phase.QUEUED,
                Phase.STAGING,
            ):
                await asyncio.sleep(0.1)
        return handle

    async def claims_waiting(self, count: int) -> None:
        """Until Temporal holds `count` claims of this class in its backlog."""
        client = await self.session.temporal()
        queue_name = names.shared_node_queue(self.settings.node_class)
        async with asyncio.timeout(60):
            while (await describe_queue(client, queue_name)).backlog < count:
                await asyncio.sleep(0.2)


async def started_order(handles: list[WorkflowHandle[object, ExecutionStatus]]) -> list[str]:
    """The runs' ids in the order they started on the one slot."""
    results = [await handle.result() for handle in handles]
    ordered = sorted(results, key=lambda status: status.started_at or 0)  # type: ignore[arg-type,return-value]
    return [status.execution_id for status in ordered]


TRIVIAL = "print('ok')\n"


async def test_a_priority_1_run_submitted_last_is_claimed_next(
    fair_env: WorkflowEnvironment, settings: Settings, tmp_path: Path
) -> None:
    runs = Runs(settings, tmp_path)
    async with agent(fair_env.client, settings, f"n-{ULID()}", slots=1), gate() as (port, go):
        blocker = await runs.blocker(port)
        ordinary = [await runs.start(TRIVIAL) for _ in range(5)]
        urgent = await runs.start(TRIVIAL, priority=1)
        await runs.claims_waiting(6)
        go.set()
        order = await started_order([*ordinary, urgent])
        await blocker.result()
    assert order[0] == urgent.id


async def test_projects_share_the_slot_by_weight_and_weights_change_live(
    fair_env: WorkflowEnvironment, settings: Settings, tmp_path: Path
) -> None:
    runs = Runs(settings, tmp_path)
    async with agent(fair_env.client, settings, f"n-{ULID()}", slots=1):
        async with gate() as (port, go):
            await runs.blocker(port)
            heavy = [await runs.start(TRIVIAL, project="a") for _ in range(30)]
            light = [await runs.start(TRIVIAL, project="b") for _ in range(6)]
            await runs.claims_waiting(36)
            last_light = await (await runs.session.ledger()).get(light[-1].id)
            first = await queue.standing(runs.session, last_light)
            go.set()
            positions = [first.position] if first else []
            while (place := await queue.standing(runs.session, last_light)) is not None:
                positions.append(place.position)
                last_light = await (await runs.session.ledger()).get(light[-1].id)
                await asyncio.sleep(0.2)
            order = await started_order([*heavy, *light])
        # Weights 1:1: b's six runs come among the first twelve claims, not after a's 30.
        light_ids = {handle.id for handle in light}
        assert light_ids <= set(order[:12])
        assert positions and positions == sorted(positions, reverse=True)

        await queue.set_weights(runs.session, {"a": 1.0, "b": 3.0}, [])
        async with gate() as (port, go):
            await runs.blocker(port)
            heavy = [await runs.start(TRIVIAL, project="a") for _ in range(20)]
            light = [await runs.start(TRIVIAL, project="b") for _ in range(20)]
            await runs.claims_waiting(40)
            go.set()
            order = await started_order([*heavy, *light])
        # 1:3 now: of the first 16 claims b has about 12, a about 4.
        light_ids = {handle.id for handle in light}
        light_share = sum(1 for execution_id in order[:16] if execution_id in light_ids)
        assert 10 <= light_share <= 14


async def test_work_past_the_queue_bound_is_refused_in_one_line(
    fair_env: WorkflowEnvironment, settings: Settings, tmp_path: Path
) -> None:
    runs = Runs(settings, tmp_path)
    bounded = Session(
        settings.model_copy(update={"max_queued": 3, "max_queued_per_project": {"geo": 1}})
    )
    async with agent(fair_env.client, settings, f"n-{ULID()}", slots=1), gate() as (port, go):
        await runs.blocker(port)
        waiting = [await runs.start(TRIVIAL, project="geo"), await runs.start(TRIVIAL)]
        await runs.claims_waiting(2)
        await queue.check_room(bounded, "ml", 1)  # 2 wait, bound 3: one more fits
        with pytest.raises(UserInputError) as refused:
            await queue.check_room(bounded, "ml", 2)
        assert "2 runs wait and the bound is 3 (RGRID_MAX_QUEUED)" in refused.value.one_line()
        with pytest.raises(UserInputError) as refused:
            await queue.check_room(bounded, "geo", 1)
        assert "1 runs of project 'geo' wait and the bound is 1" in refused.value.one_line()
        go.set()
        for handle in waiting:
            await handle.result()
    await bounded.close()


async def test_bulk_cancel_ends_exactly_the_selected_runs(
    fair_env: WorkflowEnvironment, settings: Settings, tmp_path: Path
) -> None:
    runs = Runs(settings, tmp_path)
    async with agent(fair_env.client, settings, f"n-{ULID()}", slots=1), gate() as (port, go):
        blocker = await runs.blocker(port)
        doomed = [await runs.start(TRIVIAL, sweep="yes") for _ in range(3)]
        kept = [await runs.start(TRIVIAL, sweep="no") for _ in range(2)]
        await runs.claims_waiting(5)
        chosen = await bulk_cancel.select(
            runs.session, bulk_cancel.Selection(phases=[Phase.QUEUED], tags={"sweep": "yes"})
        )
        assert sorted(run.execution_id for run in chosen) == sorted(h.id for h in doomed)
        ended = await bulk_cancel.cancel_all(runs.session, chosen)
        assert {run.phase for run in ended} == {Phase.CANCELLED}
        go.set()
        assert {(await handle.result()).phase for handle in kept} == {Phase.SUCCEEDED}
        assert (await blocker.result()).phase is Phase.SUCCEEDED


async def test_the_queue_report_counts_waiting_runs_by_priority_and_project(
    fair_env: WorkflowEnvironment, settings: Settings, tmp_path: Path
) -> None:
    runs = Runs(settings, tmp_path)
    async with agent(fair_env.client, settings, f"n-{ULID()}", slots=1), gate() as (port, go):
        await runs.blocker(port)
        waiting = [
            await runs.start(TRIVIAL, project="geo", priority=2),
            await runs.start(TRIVIAL, project="geo", priority=2),
            await runs.start(TRIVIAL, project="ml"),
        ]
        await runs.claims_waiting(3)
        report = await queue.queue_report(runs.session)
        mine = {
            (g.priority, g.project): g.waiting
            for g in report.groups
            if g.node_class == settings.node_class
        }
        assert mine == {(2, "geo"): 2, (3, "ml"): 1}
        assert settings.node_class in report.pollers
        ordered = await queue.waiting_in_order(runs.session, settings.node_class)
        assert [r.project for r in ordered] == ["geo", "geo", "ml"]
        go.set()
        for handle in waiting:
            await handle.result()
