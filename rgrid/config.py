"""Settings: environment (RGRID_*) over the config file's profile over defaults.

The config file is TOML in the XDG config dir, one table per profile:
`[profiles.default]`, `[profiles.team]`, chosen by `--profile` or RGRID_PROFILE.
With nothing configured every part is the embedded default.
"""

from __future__ import annotations

import json
import os
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, BaseModel, BeforeValidator, Field
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from rgrid import __version__
from rgrid.errors import ConfigError
from rgrid.models.pool import NodeClassConfig, ServerChoice
from rgrid.paths import config_file_path, data_home


def _pairs(value: Any) -> Any:
    """`geo=2,ml=1` (how people write it in the environment) as a mapping; JSON and dicts
    pass through."""
    if not isinstance(value, str):
        return value
    if value.lstrip().startswith("{"):
        return json.loads(value)
    pairs = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        key, sep, number = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"write {value!r} as name=number,name=number")
        pairs[key.strip()] = number.strip()
    return pairs


# A project -> number mapping read from `geo=2,ml=1` (or JSON).
ProjectNumbers = Annotated[dict[str, float], NoDecode, BeforeValidator(_pairs)]
ProjectCounts = Annotated[dict[str, int], NoDecode, BeforeValidator(_pairs)]


def read_profile(name: str, path: Path | None = None) -> dict[str, Any]:
    """The settings of one profile from the config file, or {} if it has none."""
    path = path or config_file_path()
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}", f"fix or remove it ({exc})") from exc
    profiles = data.get("profiles", {})
    if name != "default" and name not in profiles:
        raise ConfigError(
            f"no profile named {name!r} in {path}", f"create it with `rgrid init --profile {name}`"
        )
    return dict(profiles.get(name, {}))


DEBIAN_CA = "/etc/ssl/certs/ca-certificates.crt"


class _ProfileSource(PydanticBaseSettingsSource):
    """Reads the selected profile of the config file (below env, above defaults)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        profile = os.environ.get("RGRID_PROFILE", "default")
        return read_profile(profile)


class Settings(BaseSettings):
    """Everything rgrid can be configured with; see README for the variables."""

    model_config = SettingsConfigDict(env_prefix="RGRID_", extra="ignore")

    home: Path = Field(default_factory=data_home)
    profile: str = "default"

    # Temporal: unset address means "the embedded dev server".
    temporal_address: str | None = None
    temporal_namespace: str = "default"
    temporal_api_key: str | None = None
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    # Payload codec keys (`id:base64`, comma-separated, newest last); unset: the key file
    # `codec.keys` under home, made on first use.
    codec_key: str | None = None

    # Ledger and storage: unset means SQLite and a directory under `home`.
    database_url: str | None = None
    storage_url: str | None = None

    # Embedded stack.
    dev_port: int = 7233
    dev_ui_port: int | None = None
    codec_port: int | None = None  # the codec server (default: the UI's port + 1)
    dev_ip: str = "127.0.0.1"
    dev_restart_budget: int = 5  # restarts of a child in a row (or a minute), then give up

    # Nodes.
    provider: Literal["local", "hetzner"] = "local"
    node_class: str = "local"
    local_nodes: int = 1
    local_slots: int = Field(default_factory=lambda: os.cpu_count() or 1)
    local_hourly_price_microns: int = 0
    lease_ttl_s: int = 120
    # A lease whose script ran outlives lease_ttl_s (the control plane may be away) until
    # its result is taken, or nobody asked for it this long.
    lease_abandon_s: int = 1800

    # Cloud nodes (RGRID_PROVIDER=hetzner): hcloud's own token variable, any compatible
    # endpoint, and the node class: `type@location` choices tried in order.
    hcloud_token: str | None = Field(
        default=None, validation_alias=AliasChoices("HCLOUD_TOKEN", "hcloud_token")
    )
    hcloud_endpoint: str = "https://api.hetzner.cloud/v1"
    node_choices: str = "cx22@nbg1"
    server_image: str = "ubuntu-24.04"
    node_slots: int = 2
    max_nodes: int = 10
    ssh_key: str | None = None
    node_labels: dict[str, str] = Field(default_factory=dict)
    node_package: str = f"rgrid=={__version__}"
    pool_tick_s: int = 30
    node_heartbeat_s: int = 30
    node_dead_after_s: int = 120
    retire_margin_s: int = 300
    node_max_age_s: int = 86_400
    node_billing_period_s: int = 3600  # Hetzner bills started hours; shorter only in tests

    # Defaults for a run. Images are settings: a node may reach no registry at all.
    runtime: str = "auto"
    python_image: str = "python:3.11-slim"
    node_image: str = "node:20-slim"
    ca_bundle: Path | None = Field(
        default_factory=lambda: Path(
            os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
        )
    )
    timeout_s: int = 3600
    cpus: float = 1.0
    memory_mb: int = 1024
    project: str = "default"
    max_node_attempts: int = 3
    queue_timeout_s: int = 3600
    # The queue: fairness weights per project (live changes: `rgrid queue weights`), and
    # bounds on runs waiting for a node, over all projects and per project.
    project_weights: ProjectNumbers = Field(default_factory=dict)
    max_queued: int = 10_000
    max_queued_per_project: ProjectCounts = Field(default_factory=dict)
    heartbeat_timeout_s: int = 30
    # How long the CLI retries a control plane it cannot reach before exiting 75.
    unreachable_retry_s: float = 120.0
    batch_page_size: int = 200
    limit_check_s: float = 30.0  # how often the control worker checks spending limits

    debug: bool = False
    # Days outputs and logs are kept; cache entries live as long as their outputs.
    retention_days: int = 30
    # Days an input (cas/) stays stored after its last use; a run after that uploads it again.
    input_retention_days: int = 7

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ProfileSource(settings_cls))

    @property
    def embedded(self) -> bool:
        """True when no Temporal address is configured: rgrid runs its own stack."""
        return self.temporal_address is None

    @property
    def effective_temporal_address(self) -> str:
        """The Temporal frontend to dial."""
        return self.temporal_address or f"{self.dev_ip}:{self.dev_port}"

    @property
    def effective_ui_port(self) -> int:
        """The Web UI port of the embedded server (Temporal's own default: gRPC + 1000)."""
        return self.dev_ui_port or self.dev_port + 1000

    @property
    def effective_codec_port(self) -> int:
        """Where the codec server listens for the Web UI."""
        return self.codec_port or self.effective_ui_port + 1

    @property
    def effective_database_url(self) -> str:
        """The ledger's SQLAlchemy URL."""
        return self.database_url or f"sqlite+aiosqlite:///{self.home / 'ledger.db'}"

    @property
    def effective_storage_url(self) -> str:
        """Where inputs, logs and outputs are stored."""
        return self.storage_url or (self.home / "storage").as_uri()

    @property
    def dev_dir(self) -> Path:
        """State of the embedded stack: pid file, server db, logs."""
        return self.home / "dev"

    def node_class_config(self) -> NodeClassConfig:
        """The pool configuration of this deployment's node class."""
        choices = []
        for item in self.node_choices.split(","):
            server_type, _, location = item.strip().partition("@")
            if not server_type or not location:
                raise ConfigError(
                    f"bad node choice {item!r}", "write RGRID_NODE_CHOICES as cx22@nbg1,cx32@fsn1"
                )
            choices.append(ServerChoice(server_type=server_type, location=location))
        return NodeClassConfig(
            provider=self.provider,
            node_class=self.node_class,
            choices=choices,
            image=self.server_image,
            slots=self.node_slots,
            max_nodes=self.max_nodes,
            ssh_key=self.ssh_key,
            labels=self.node_labels,
            tick_s=self.pool_tick_s,
            heartbeat_s=self.node_heartbeat_s,
            dead_after_s=self.node_dead_after_s,
            retire_margin_s=self.retire_margin_s,
            max_age_s=self.node_max_age_s,
            billing_period_s=self.node_billing_period_s,
        )

    @property
    def cache_retention(self) -> timedelta:
        """How long a cache entry may answer runs: as long as its outputs are kept."""
        return timedelta(days=self.retention_days)

    @property
    def pool_id(self) -> str | None:
        """The NodePoolWorkflow that scales this node class, or None for fixed local nodes
        (RGRID_LOCAL_NODES=0 puts local agents behind a pool too)."""
        if self.provider == "local" and self.local_nodes > 0:
            return None
        from rgrid.names import pool_workflow_id  # names loads temporalio: not at CLI start

        return pool_workflow_id(self.provider, self.node_class)

    @property
    def node_dir(self) -> Path:
        """Work and cache dirs of local nodes."""
        return self.home / "nodes"


# Settings whose values are never shown: `rgrid config` says only whether they are set.
SECRET_SETTINGS = frozenset({"temporal_api_key", "hcloud_token", "codec_key"})


class SettingSource(BaseModel):
    """One effective setting, printable: its value (secrets hidden) and where it came from."""

    name: str
    value: str | None
    source: str


def describe_settings(settings: Settings) -> list[SettingSource]:
    """Every setting with its effective value and source: env, a profile, or the default."""
    profile = os.environ.get("RGRID_PROFILE", "default")
    path = config_file_path()
    in_profile = read_profile(profile, path)
    described = []
    for name in Settings.model_fields:
        env_name = "HCLOUD_TOKEN" if name == "hcloud_token" else f"RGRID_{name.upper()}"
        if env_name in os.environ:
            source = f"env {env_name}"
        elif name in in_profile:
            source = f"profile {profile} in {path}"
        else:
            source = "default"
        described.append(SettingSource(name=name, value=_shown(name, settings), source=source))
    return described


def _shown(name: str, settings: Settings) -> str | None:
    effective = {
        "temporal_address": settings.effective_temporal_address
        + (" (embedded)" if settings.embedded else ""),
        "database_url": settings.effective_database_url,
        "storage_url": settings.effective_storage_url,
        "dev_ui_port": str(settings.effective_ui_port),
    }
    value = getattr(settings, name)
    if name in SECRET_SETTINGS:
        return None if value is None else "(set, hidden)"
    shown = effective.get(name, None if value is None else str(value))
    return hide_password(shown) if shown else shown


def hide_password(url: str) -> str:
    """A URL with any password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# What a node must never hold: it reaches the ledger only through Temporal.
NODE_WITHHELD = frozenset({"database_url", "hcloud_token"})


def node_environment(settings: Settings) -> dict[str, str]:
    """The RGRID_* variables a node agent gets: every effective setting but the withheld
    ones, with the config file switched off (so a profile cannot hand it the database URL)."""
    env = {"RGRID_CONFIG": os.devnull}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        # The profile was resolved here; the node reads no config file to apply it to.
        if name in NODE_WITHHELD or name == "profile" or value is None:
            continue
        # Dicts and lists as JSON, which is how settings read them back.
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
        env[f"RGRID_{name.upper()}"] = text
    env["RGRID_TEMPORAL_ADDRESS"] = settings.effective_temporal_address
    env["RGRID_STORAGE_URL"] = settings.effective_storage_url
    return env


def load_settings(**overrides: Any) -> Settings:
    """Settings from env, config file and defaults, with explicit overrides on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
