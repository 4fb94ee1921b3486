"""The small configs each part of rgrid gets: derived from Settings (the one place that
reads env, profile and defaults) by its methods, so an activity class or adapter sees only
the settings it uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path


@dataclass(frozen=True)
class ControlConfig:
    """What the control activities use: how long a cache entry may answer runs."""

    cache_retention: timedelta


@dataclass(frozen=True)
class StorageConfig:
    """Where things are stored and how long the bucket's lifecycle rules keep them."""

    url: str
    retention_days: int  # outputs, logs, batch manifests
    input_retention_days: int  # inputs, after their last use


@dataclass(frozen=True)
class NodeJoin:
    """The control plane's settings a cloud node is booted with (never the ledger's)."""

    temporal_address: str
    temporal_namespace: str
    storage_url: str
    package: str  # what pip installs on the node
    heartbeat_timeout_s: int
    run_env: dict[str, str] = field(default_factory=dict)  # RGRID_* of how runs run
    temporal_api_key: str | None = None
    # Read when a node is created, so a renewed certificate reaches the next node.
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None


@dataclass(frozen=True)
class HetznerConfig:
    """What the Hetzner provider uses: its API and what its nodes join."""

    token: str | None
    endpoint: str
    join: NodeJoin
