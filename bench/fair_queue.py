"""Fairness between projects, and what it costs a claim: two dev servers side by side in one
process, one configured as rgrid ships it (fairness on) and one without fairness.

    .venv/bin/python bench/fair_queue.py [--claims 200] [--slots 4] [--probes 20]

Three projects (weights 3:2:1) each queue `claims` runs of a trivial script behind a full
node, project a first; the node then takes `claims` of them. Printed: each project's share
of those claims against its weight's share (goal: within 10 %), and the claim latency of a
run that finds a free slot (scheduled -> started of its claim_node task, median of
`probes`), fairness on versus off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

import yaml
from aiohttp import web
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from ulid import ULID

from rgrid.client import bulk_cancel, queue, submit
from rgrid.client.session import Session
from rgrid.config import Settings
from rgrid.infra.codec import CodecKey, Keyring
from rgrid.infra.ledger import Ledger
from rgrid.infra.storage.local import LocalStorage
from rgrid.infra.temporal import data_converter
from rgrid.models.execution import Phase
from rgrid.names import SEARCH_ATTRIBUTES
from rgrid.worker.agent import build_workers
from rgrid.worker.control import build_control_worker
from rgrid.worker.dev import temporal_binary

WEIGHTS = {"a": 3.0, "b": 2.0, "c": 1.0}
KEYS = Keyring([CodecKey.generate()])  # the payload codec every part of a deployment shares
SCRIPT = "print('ok')\n"


def dynamic_config(fair: bool) -> list[str]:
    config = yaml.safe_load(resources.files("rgrid").joinpath("temporal-dev.yaml").read_text())
    args = []
    for key, value in config["dynamic_config"].items():
        if not fair and key == "matching.enableFairness":
            continue
        args += ["--dynamic-config-value", f"{key}={str(value).lower()}"]
    return args


@contextlib.asynccontextmanager
async def deployment(fair: bool, root: Path, slots: int) -> AsyncIterator[Settings]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=data_converter(KEYS),
        dev_server_extra_args=dynamic_config(fair),
        search_attributes=list(SEARCH_ATTRIBUTES),
        ui=False,
    )
    settings = Settings(
        home=root,
        temporal_address=env.client.service_client.config.target_host,
        database_url=f"sqlite+aiosqlite:///{root / 'ledger.db'}",
        storage_url=(root / "storage").as_uri(),
        node_class=f"bench-{str(ULID()).lower()}",
        codec_key=KEYS.export(),
    )
    ledger = await Ledger.open(settings.effective_database_url)
    async with (
        env,
        build_control_worker(env.client, ledger, LocalStorage(root / "storage"), settings),
    ):
        workers, _ = build_workers(env.client, settings, "bench-node", slots)
        async with contextlib.AsyncExitStack() as stack:
            for worker in workers:
                await stack.enter_async_context(worker)
            yield settings
    await ledger.close()


async def start(settings: Settings, root: Path, project: str, body: str = SCRIPT) -> str:
    session = Session(settings.model_copy(update={"project": project}))
    script = root / f"{project}.py"
    script.write_text(body + "# rgrid: no-cache\n")
    spec, _ = await submit.prepare(session, submit.RunRequest(script=script), root)
    handle = await submit.start(session, spec)
    await session.close()
    return handle.id


async def claim_latency_ms(settings: Settings, root: Path, probes: int) -> float:
    """Scheduled -> started of claim_node, for runs that find a free slot."""
    session = Session(settings)
    client = await session.temporal()
    latencies = []
    for _ in range(probes):
        handle = client.get_workflow_handle(await start(settings, root, "a"))
        await handle.result()
        scheduled = started = None
        async for event in handle.fetch_history_events():
            attributes = event.activity_task_scheduled_event_attributes
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                if attributes.activity_type.name == "claim_node" and scheduled is None:
                    scheduled = event.event_time.ToDatetime()
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED and started is None:
                started = event.event_time.ToDatetime()
        assert scheduled and started
        latencies.append((started - scheduled).total_seconds() * 1000)
    await session.close()
    return statistics.median(latencies)


async def shares(settings: Settings, root: Path, claims: int, slots: int) -> dict[str, float]:
    """Each project's share of the first `claims` claims, all three kept waiting."""
    session = Session(settings)
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
    # Hold every slot so that all runs queue before the first claim.
    gate = f"import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/').read()\n"
    for _ in range(slots):
        await start(settings, root, "blocker", gate)
    await queue.set_weights(session, WEIGHTS, [])
    for project in WEIGHTS:  # project a first: FIFO would give it every claim
        for _ in range(claims):
            await start(settings, root, project)
    opened.set()
    ledger = await session.ledger()
    while True:
        done = [
            run
            for run in await ledger.recent(limit=10 * claims, phase=Phase.SUCCEEDED)
            if run.project in WEIGHTS
        ]
        if len(done) >= claims:
            break
        await asyncio.sleep(1)
    first = sorted(done, key=lambda run: run.started_at)[:claims]  # type: ignore[arg-type,return-value]
    await bulk_cancel.cancel_all(
        session, await bulk_cancel.select(session, bulk_cancel.Selection())
    )
    await runner.cleanup()
    await session.close()
    return {p: sum(1 for run in first if run.project == p) / claims for p in WEIGHTS}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--probes", type=int, default=20)
    args = parser.parse_args()
    results = {}
    for fair in (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            async with deployment(fair, root, args.slots) as settings:
                latency = await claim_latency_ms(settings, root, args.probes)
                got = await shares(settings, root, args.claims, args.slots) if fair else {}
                results[fair] = (latency, got)
    total = sum(WEIGHTS.values())
    print(f"{args.claims} claims, weights a:b:c = 3:2:1, node of {args.slots} slots")
    print(f"{'project':8} {'weight share':>13} {'claims share':>13} {'off by':>8}")
    for project, weight in WEIGHTS.items():
        want, got = weight / total, results[True][1][project]
        print(f"{project:8} {want:13.1%} {got:13.1%} {abs(got - want) / want:8.1%}")
    on, off = results[True][0], results[False][0]
    print(
        f"claim latency (free slot, median of {args.probes}): fairness on {on:.1f} ms, "
        f"off {off:.1f} ms, ratio {on / off:.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
