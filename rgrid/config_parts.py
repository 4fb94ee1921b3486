"""The small configs each part of rgrid gets, each derived from Settings (the one place
that reads env, profile and defaults) by its `of`, so an activity class or adapter sees
only the settings it uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rgrid.config import Settings

# Settings of how runs run, which cloud nodes share with the control plane (paths do not
# apply there).
RUN_SETTINGS = ("runtime", "python_image", "node_image", "lease_ttl_s")


@dataclass(frozen=True)
class ControlConfig:
    """What the control activities use: how long a cache entry may answer runs."""

    cache_retention: timedelta

    @classmethod
    def of(cls, settings: Settings) -> ControlConfig:
        return cls(cache_retention=settings.cache_retention)


@dataclass(frozen=True)
class StorageConfig:
    """Where things are stored and how long the bucket's lifecycle rules keep them."""

    url: str
    retention_days: int  # outputs, logs, batch manifests
    input_retention_days: int  # inputs, after their last use

    @classmethod
    def of(cls, settings: Settings) -> StorageConfig:
        return cls(
            url=settings.effective_storage_url,
            retention_days=settings.retention_days,
            input_retention_days=settings.input_retention_days,
        )


@dataclass(frozen=True)
class NodeJoin:
    """The control plane's settings a cloud node is booted with (never the ledger's)."""

    temporal_address: str
    temporal_namespace: str
    storage_url: str
    package: str  # what pip installs on the node
    heartbeat_timeout_s: int
    run_env: dict[str, str] = field(default_factory=dict)  # RGRID_* of RUN_SETTINGS
    temporal_api_key: str | None = None
    # Read when a node is created, so a renewed certificate reaches the next node.
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    # Where the codec keys are (RGRID_CODEC_KEY, else the key file in home): the node
    # decrypts payloads and unseals secrets with them.
    home: Path = Path()
    codec_key: str | None = None

    @classmethod
    def of(cls, settings: Settings) -> NodeJoin:
        return cls(
            temporal_address=settings.effective_temporal_address,
            temporal_namespace=settings.temporal_namespace,
            temporal_api_key=settings.temporal_api_key,
            temporal_tls_cert=settings.temporal_tls_cert,
            temporal_tls_key=settings.temporal_tls_key,
            storage_url=settings.effective_storage_url,
            run_env={f"RGRID_{k.upper()}": str(getattr(settings, k)) for k in RUN_SETTINGS},
            package=settings.node_package,
            heartbeat_timeout_s=settings.heartbeat_timeout_s,
            home=settings.home,
            codec_key=settings.codec_key,
        )


@dataclass(frozen=True)
class HetznerConfig:
    """What the Hetzner provider uses: its API and what its nodes join."""

    token: str | None
    endpoint: str
    join: NodeJoin

    @classmethod
    def of(cls, settings: Settings) -> HetznerConfig:
        return cls(
            token=settings.hcloud_token,
            endpoint=settings.hcloud_endpoint,
            join=NodeJoin.of(settings),
        )
