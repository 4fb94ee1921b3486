"""The user data a Hetzner server boots with: valid cloud-config by cloud-init's own
schema checker, the agent's node-scoped config, and nothing of the ledger."""

from __future__ import annotations

import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest
import yaml

from rgrid.config import Settings
from rgrid.config_parts import NodeJoin
from rgrid.infra.providers.cloud_init import (
    AGENT_ENV,
    NodeBootstrap,
    bootstrap_from,
    user_data,
)
from tests.standins.systemd import local_rgrid, read_env_file, service_command

BOOT = NodeBootstrap(
    node_id="gpu-3-a1b2c3",
    node_class="gpu",
    slots=2,
    hourly_price_microns=6000,
    temporal_address="temporal.example:7233",
    temporal_api_key="secret-key",
    temporal_tls_cert="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    temporal_tls_key="-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
    storage_url="s3://bucket/rgrid",
    storage_env={"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": 'se"cret'},
)


@pytest.mark.skipif(shutil.which("cloud-init") is None, reason="cloud-init is not installed")
def test_user_data_passes_cloud_inits_schema_check(tmp_path: Path) -> None:
    path = tmp_path / "user-data"
    path.write_text(user_data(BOOT))
    done = subprocess.run(
        ["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Valid cloud-config" in done.stdout


@pytest.mark.skipif(shutil.which("cloud-init") is None, reason="cloud-init is not installed")
def test_the_schema_check_rejects_broken_user_data(tmp_path: Path) -> None:
    # Guards the test above: the checker really checks.
    path = tmp_path / "user-data"
    path.write_text("#cloud-config\nwrite_files: [{content: x}]\n")
    done = subprocess.run(["cloud-init", "schema", "--config-file", str(path)], check=False)
    assert done.returncode != 0


def test_user_data_installs_docker_and_rgrid_and_starts_the_agent_unit() -> None:
    config = yaml.safe_load(user_data(BOOT))
    assert "docker.io" in config["packages"]
    commands = [" ".join(c) for c in config["runcmd"]]
    assert any("pip install" in c and "rgrid==" in c for c in commands)
    assert commands[-1] == "systemctl enable --now rgrid-agent.service"
    files = {f["path"]: f["content"] for f in config["write_files"]}
    # The unit rgrid ships, byte for byte: no command line of cloud-init's own.
    shipped = resources.files("rgrid").joinpath("deploy", "rgrid-agent.service").read_text()
    assert files["/etc/systemd/system/rgrid-agent.service"] == shipped
    assert "--node-id ${RGRID_NODE_ID} --slots ${RGRID_NODE_SLOTS}" in shipped
    assert "EnvironmentFile=/etc/rgrid/agent.env" in shipped
    env = read_env_file(files[AGENT_ENV])
    assert (env["RGRID_NODE_ID"], env["RGRID_NODE_SLOTS"]) == ("gpu-3-a1b2c3", "2")
    assert env["RGRID_LOCAL_HOURLY_PRICE_MICRONS"] == "6000"


def test_the_agent_gets_temporal_storage_and_codec_keys_and_no_database_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AK")
    settings = Settings(
        home=tmp_path,
        temporal_address="temporal.example:7233",
        database_url="postgresql+asyncpg://rgrid:pw@db/rgrid",
        storage_url="s3://bucket/rgrid",
    )
    boot = bootstrap_from(NodeJoin.of(settings), node_id="n-1", node_class="gpu", slots=2)
    text = user_data(boot)
    env = next(f for f in yaml.safe_load(text)["write_files"] if f["path"] == AGENT_ENV)
    assert env["permissions"] == "0600"
    assert 'RGRID_TEMPORAL_ADDRESS="temporal.example:7233"' in env["content"]
    assert 'RGRID_STORAGE_URL="s3://bucket/rgrid"' in env["content"]
    assert 'AWS_ACCESS_KEY_ID="AK"' in env["content"]
    assert 'RGRID_NODE_CLASS="gpu"' in env["content"]
    # The node decrypts payloads and unseals secrets with every key of the control plane's.
    keys = (tmp_path / "codec.keys").read_text().strip()
    assert f'RGRID_CODEC_KEY="{keys}"' in env["content"]
    assert "DATABASE" not in text and "asyncpg" not in text and "pw@db" not in text


def test_values_are_quoted_for_systemd_and_tls_files_are_written() -> None:
    config = yaml.safe_load(user_data(BOOT))
    files = {f["path"]: f["content"] for f in config["write_files"]}
    assert 'AWS_SECRET_ACCESS_KEY="se\\"cret"' in files[AGENT_ENV]
    assert files["/etc/rgrid/temporal-client.crt"] == BOOT.temporal_tls_cert
    # The agent's dynamic user reads them as systemd credentials, not from root's files.
    drop_in = files["/etc/systemd/system/rgrid-agent.service.d/temporal-tls.conf"]
    assert "LoadCredential=temporal-client.crt:/etc/rgrid/temporal-client.crt" in drop_in
    assert "LoadCredential=temporal-client.key:/etc/rgrid/temporal-client.key" in drop_in
    env = read_env_file(files[AGENT_ENV])
    credentials = "/run/credentials/rgrid-agent.service"
    assert env["RGRID_TEMPORAL_TLS_CERT"] == f"{credentials}/temporal-client.crt"
    assert env["RGRID_TEMPORAL_TLS_KEY"] == f"{credentials}/temporal-client.key"
    assert env["AWS_SECRET_ACCESS_KEY"] == 'se"cret'


def test_without_tls_there_is_no_credentials_drop_in() -> None:
    boot = BOOT.model_copy(update={"temporal_tls_cert": None, "temporal_tls_key": None})
    config = yaml.safe_load(user_data(boot))
    paths = {f["path"] for f in config["write_files"]}
    assert paths == {AGENT_ENV, "/etc/systemd/system/rgrid-agent.service"}
    env = read_env_file(next(f["content"] for f in config["write_files"] if f["path"] == AGENT_ENV))
    assert not [key for key in env if "TLS" in key]


def test_the_node_runs_the_shipped_units_command_with_its_own_id_and_slots() -> None:
    # What systemd (and the Hetzner stand-in, through the same reading) starts on the node.
    files = {f["path"]: f["content"] for f in yaml.safe_load(user_data(BOOT))["write_files"]}
    unit = files["/etc/systemd/system/rgrid-agent.service"]
    argv, env = service_command([unit], read=files.__getitem__, base_env={})
    assert argv == [*local_rgrid(), "worker", "agent", "--node-id", "gpu-3-a1b2c3", "--slots", "2"]
    assert env["RGRID_HOME"] == "/var/lib/rgrid" and env["RGRID_CONFIG"] == "/dev/null"
    assert not [key for key in env if "DATABASE" in key]


def test_user_data_fits_hetzners_32_kib_limit() -> None:
    assert len(user_data(BOOT).encode()) < 32 * 1024
