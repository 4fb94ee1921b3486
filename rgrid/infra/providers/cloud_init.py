"""Cloud-init user data that turns a fresh server into an rgrid node.

The `#cloud-config` installs Docker and Python, installs rgrid in a venv, writes the
node-scoped agent config (Temporal address and credentials, storage access, node id,
class and slots, the payload codec's keys) to `/etc/rgrid/agent.env` (0600), and installs
and starts the unit rgrid ships (`rgrid/deploy/rgrid-agent.service`, written verbatim),
whose ExecStart takes the node's id and slots from that file. It carries no database
URL: nodes never hold ledger credentials.
"""

from __future__ import annotations

import os
from importlib import resources

import yaml
from pydantic import BaseModel, Field

from rgrid import __version__
from rgrid.config_parts import NodeJoin
from rgrid.infra.codec import load_keyring

AGENT_ENV = "/etc/rgrid/agent.env"
AGENT_UNIT = "/etc/systemd/system/rgrid-agent.service"
AGENT_UNIT_NAME = "rgrid-agent.service"
VENV = "/opt/rgrid/venv"
NODE_HOME = "/var/lib/rgrid"
TLS_CERT = "/etc/rgrid/temporal-client.crt"
TLS_KEY = "/etc/rgrid/temporal-client.key"
# The unit runs as a dynamic user, who cannot read root's 0600 files: systemd hands it
# copies as credentials (LoadCredential= in a drop-in), at this fixed place.
TLS_DROP_IN = f"/etc/systemd/system/{AGENT_UNIT_NAME}.d/temporal-tls.conf"
CREDENTIALS = f"/run/credentials/{AGENT_UNIT_NAME}"

# Storage credentials and endpoint travel in the standard AWS variables (S3Storage reads them).
STORAGE_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)


class NodeBootstrap(BaseModel):
    """What a node needs to join: where Temporal and storage are, and who it is."""

    node_id: str
    node_class: str
    slots: int
    hourly_price_microns: int = 0
    temporal_address: str
    temporal_namespace: str = "default"
    temporal_api_key: str | None = None
    temporal_tls_cert: str | None = None  # PEM text, written to the node
    temporal_tls_key: str | None = None
    storage_url: str
    codec_key: str | None = None  # every codec key: the node decrypts payloads, unseals secrets
    storage_env: dict[str, str] = Field(default_factory=dict)
    run_env: dict[str, str] = Field(default_factory=dict)  # RGRID_* of config.RUN_SETTINGS
    package: str = f"rgrid=={__version__}"  # what pip installs on the node
    heartbeat_timeout_s: int = 30


def bootstrap_from(join: NodeJoin, **node: object) -> NodeBootstrap:
    """What the control plane hands a node (its TLS and key files read now), plus its
    identity."""
    cert = join.temporal_tls_cert.read_text() if join.temporal_tls_cert else None
    key = join.temporal_tls_key.read_text() if join.temporal_tls_key else None
    return NodeBootstrap(
        temporal_address=join.temporal_address,
        temporal_namespace=join.temporal_namespace,
        temporal_api_key=join.temporal_api_key,
        temporal_tls_cert=cert,
        temporal_tls_key=key,
        storage_url=join.storage_url,
        codec_key=load_keyring(join.home, join.codec_key).export(),
        storage_env={k: os.environ[k] for k in STORAGE_ENV if os.environ.get(k)},
        run_env=join.run_env,
        package=join.package,
        heartbeat_timeout_s=join.heartbeat_timeout_s,
        **node,  # type: ignore[arg-type]
    )


def agent_env(boot: NodeBootstrap) -> dict[str, str]:
    """The agent's environment: exactly what a node may know, and nothing of the ledger."""
    env = {
        **boot.run_env,
        "RGRID_CONFIG": "/dev/null",  # no config file on the image can add to this
        "RGRID_HOME": NODE_HOME,
        "RGRID_TEMPORAL_ADDRESS": boot.temporal_address,
        "RGRID_TEMPORAL_NAMESPACE": boot.temporal_namespace,
        "RGRID_STORAGE_URL": boot.storage_url,
        "RGRID_NODE_ID": boot.node_id,  # the shipped unit's ExecStart reads these two
        "RGRID_NODE_SLOTS": str(boot.slots),
        "RGRID_NODE_CLASS": boot.node_class,
        # The price this node's leases carry into the ledger's cost records.
        "RGRID_LOCAL_HOURLY_PRICE_MICRONS": str(boot.hourly_price_microns),
        "RGRID_HEARTBEAT_TIMEOUT_S": str(boot.heartbeat_timeout_s),
        **boot.storage_env,
    }
    if boot.codec_key:
        env["RGRID_CODEC_KEY"] = boot.codec_key
    if boot.temporal_api_key:
        env["RGRID_TEMPORAL_API_KEY"] = boot.temporal_api_key
    if boot.temporal_tls_cert and boot.temporal_tls_key:
        env["RGRID_TEMPORAL_TLS_CERT"] = f"{CREDENTIALS}/temporal-client.crt"
        env["RGRID_TEMPORAL_TLS_KEY"] = f"{CREDENTIALS}/temporal-client.key"
    return env


def _env_file(env: dict[str, str]) -> str:
    # systemd EnvironmentFile syntax: KEY="value" with backslash escapes.
    lines = []
    for key, value in sorted(env.items()):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{key}="{escaped}"')
    return "\n".join(lines) + "\n"


def agent_unit() -> str:
    """The agent's systemd unit as rgrid ships it."""
    return resources.files("rgrid").joinpath("deploy", AGENT_UNIT_NAME).read_text()


def _tls_drop_in() -> str:
    return (
        "[Service]\n"
        f"LoadCredential=temporal-client.crt:{TLS_CERT}\n"
        f"LoadCredential=temporal-client.key:{TLS_KEY}\n"
    )


def user_data(boot: NodeBootstrap) -> str:
    """The `#cloud-config` document that makes a fresh server this node."""
    files = [
        {"path": AGENT_ENV, "permissions": "0600", "content": _env_file(agent_env(boot))},
        {"path": AGENT_UNIT, "permissions": "0644", "content": agent_unit()},
    ]
    if boot.temporal_tls_cert and boot.temporal_tls_key:
        files.append({"path": TLS_CERT, "permissions": "0600", "content": boot.temporal_tls_cert})
        files.append({"path": TLS_KEY, "permissions": "0600", "content": boot.temporal_tls_key})
        files.append({"path": TLS_DROP_IN, "permissions": "0644", "content": _tls_drop_in()})
    config = {
        "package_update": True,
        "packages": ["docker.io", "python3-venv", "ca-certificates"],
        "write_files": files,
        "runcmd": [
            ["systemctl", "enable", "--now", "docker.service"],
            ["python3", "-m", "venv", VENV],
            [f"{VENV}/bin/pip", "install", "--quiet", boot.package],
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", "--now", AGENT_UNIT_NAME],
        ],
    }
    return "#cloud-config\n" + yaml.dump(config, Dumper=_BlockDumper, sort_keys=False, width=1000)


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (the files) as literal blocks, readable as they land."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)
