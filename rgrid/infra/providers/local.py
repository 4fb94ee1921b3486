"""The local provider: node agents as subprocesses of this machine.

Two ways to run local agents: a fixed set, run by the embedded stack's supervisor with
`agent_command` (the default), or, with RGRID_LOCAL_NODES=0, this NodeProvider behind a
node pool (`pool-local-<class>`), which starts and retires agents as work comes and goes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rgrid.config import Settings, node_environment
from rgrid.infra.processes import dying_with_parent
from rgrid.infra.providers import CreateNode, node_labels
from rgrid.models.pool import ServerInfo


def agent_command(
    settings: Settings, node_id: str, slots: int, node_class: str | None = None
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of a local agent, pointed at this stack's
    Temporal and storage only."""
    # Storage credentials (AWS_*) pass through; rgrid's own settings are set from this
    # stack's, without the database URL: nodes never hold database credentials (nor
    # the cloud provider's token).
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("RGRID_", "HCLOUD_"))}
    env = {
        **inherited,
        **node_environment(settings),
        "RGRID_NODE_CLASS": node_class or settings.node_class,
    }
    argv = [sys.executable, "-m", "rgrid.worker.agent", "--node-id", node_id]
    return [*argv, "--slots", str(slots)], env


@dataclass
class _Agent:
    process: subprocess.Popen[bytes]
    node_class: str
    created_at: datetime
    labels: dict[str, str]


class LocalProvider:
    """Starts and stops agent subprocesses; each is one node with its own slots."""

    name = "local"

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self._settings = settings
        self._log_dir = log_dir
        self._agents: dict[str, _Agent] = {}

    def start_node(self, node_id: str, slots: int, node_class: str | None = None) -> None:
        """Start one agent, pointed at this stack's Temporal and storage only."""
        argv, env = agent_command(self._settings, node_id, slots, node_class)
        self._log_dir.mkdir(parents=True, exist_ok=True)
        log = (self._log_dir / f"agent-{node_id}.log").open("ab")
        process = subprocess.Popen(
            dying_with_parent(argv),  # a pool's agents end with the worker that runs them
            env=env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        node_class = node_class or self._settings.node_class
        self._agents[node_id] = _Agent(
            process, node_class, datetime.now(UTC), node_labels(node_class, node_id)
        )

    def pid(self, node_id: str) -> int:
        """The agent process of a node started here."""
        return self._agents[node_id].process.pid

    def kill_node(self, node_id: str) -> None:
        """Kill an agent abruptly, as a dying machine would."""
        self._agents.pop(node_id).process.kill()

    def stop_all(self, timeout_s: float = 10.0) -> None:
        """Stop every agent, politely first."""
        procs = [agent.process for agent in self._agents.values()]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._agents.clear()

    # --- NodeProvider: the same pool as Hetzner's, with processes for servers ---

    async def create_node(self, request: CreateNode) -> ServerInfo:
        """Start an agent process as a node of the request's class."""
        self.start_node(request.node_id, request.slots, request.node_class)
        return self._info(request.node_id, self._agents[request.node_id])

    async def list_nodes(self, node_class: str) -> list[ServerInfo]:
        """This provider's agents of the class; an exited one reports status "off"."""
        return [
            self._info(node_id, agent)
            for node_id, agent in self._agents.items()
            if agent.node_class == node_class
        ]

    async def delete_node(self, server_id: int) -> None:
        """Stop the agent with this pid; one already gone is not an error."""
        for node_id, agent in list(self._agents.items()):
            if agent.process.pid == server_id:
                agent.process.kill()
                agent.process.wait()
                del self._agents[node_id]

    def _info(self, node_id: str, agent: _Agent) -> ServerInfo:
        return ServerInfo(
            server_id=agent.process.pid,
            name=node_id,
            status="running" if agent.process.poll() is None else "off",
            server_type="process",
            location="local",
            created_at=agent.created_at,
            labels=agent.labels,
            hourly_price_microns=self._settings.local_hourly_price_microns,
        )
