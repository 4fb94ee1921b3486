"""The local provider: node agents as subprocesses of this machine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from rgrid.config import Settings, node_environment


class LocalProvider:
    """Starts and stops agent subprocesses; each is one node with its own slots."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self._settings = settings
        self._log_dir = log_dir
        self._agents: dict[str, subprocess.Popen[bytes]] = {}

    def start_nodes(self) -> list[str]:
        """Start the configured number of nodes; returns their ids."""
        for index in range(1, self._settings.local_nodes + 1):
            self.start_node(f"local-{index}", self._settings.local_slots)
        return list(self._agents)

    def start_node(self, node_id: str, slots: int) -> None:
        """Start one agent, pointed at this stack's Temporal and storage only."""
        # Storage credentials (AWS_*) pass through; rgrid's own settings are set from this
        # stack's, without the database URL: nodes never hold database credentials.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("RGRID_")}
        env = {**inherited, **node_environment(self._settings)}
        log = (self._log_dir / f"agent-{node_id}.log").open("ab")
        self._agents[node_id] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rgrid.worker.agent",
                "--node-id",
                node_id,
                "--slots",
                str(slots),
            ],
            env=env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()

    def kill_node(self, node_id: str) -> None:
        """Kill an agent abruptly, as a dying machine would."""
        self._agents.pop(node_id).kill()

    def stop_all(self, timeout_s: float = 10.0) -> None:
        """Stop every agent, politely first."""
        for proc in self._agents.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._agents.values():
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._agents.clear()
