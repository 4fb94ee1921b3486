"""HetznerProvider: the real hcloud client against the Hetzner API stand-in, and the
stand-in's own behaviour (label selectors, booting the real user data)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rgrid.config import Settings
from rgrid.config_parts import HetznerConfig
from rgrid.errors import (
    CapacityUnavailableError,
    ConfigError,
    QuotaExceededError,
    ServiceUnavailableError,
    UnknownServerChoiceError,
)
from rgrid.infra.providers import CreateNode
from rgrid.infra.providers.hetzner import HetznerProvider, to_microns
from rgrid.models.pool import ServerChoice
from tests.standins.hetzner import Fault, HetznerStandIn, matches_selector, serve

pytestmark = pytest.mark.integration

TOKEN = "t0ken"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def standin(tmp_path: Path) -> AsyncIterator[tuple[HetznerStandIn, Settings]]:
    port = free_port()
    runner, api = await serve(port, tmp_path / "api", token=TOKEN)
    settings = Settings(
        home=tmp_path,
        hcloud_token=TOKEN,
        hcloud_endpoint=f"http://127.0.0.1:{port}/v1",
        temporal_address="127.0.0.1:9",  # the agents may fail to connect: not tested here
    )
    yield api, settings
    await runner.cleanup()


def create(node_id: str, server_type: str = "cx22", location: str = "nbg1") -> CreateNode:
    return CreateNode(
        node_id=node_id,
        node_class="cpu",
        choice=ServerChoice(server_type=server_type, location=location),
        labels={"team": "geo"},
    )


async def test_the_hourly_price_comes_from_the_api_per_type_and_location(
    standin: tuple[HetznerStandIn, Settings],
) -> None:
    provider = HetznerProvider(HetznerConfig.of(standin[1]))
    small = await provider.create_node(create("n-1"))
    large = await provider.create_node(create("n-2", "cx32", "fsn1"))
    assert (small.hourly_price_microns, small.currency) == (6000, "EUR")
    assert (large.server_type, large.location, large.hourly_price_microns) == (
        "cx32",
        "fsn1",
        11300,
    )
    assert to_microns("0.0060000000000000") == 6000


async def test_servers_carry_rgrid_labels_and_are_listed_by_class_only(
    standin: tuple[HetznerStandIn, Settings],
) -> None:
    provider = HetznerProvider(HetznerConfig.of(standin[1]))
    await provider.create_node(create("n-1"))
    (server,) = await provider.list_nodes("cpu")
    assert server.labels == {
        "team": "geo",
        "rgrid": "node",
        "rgrid-class": "cpu",
        "rgrid-node": "n-1",
    }
    assert (server.hourly_price_microns, server.currency) == (6000, "EUR")  # a retry reuses it
    assert await provider.list_nodes("gpu") == []


async def test_a_quota_error_says_what_to_do(standin: tuple[HetznerStandIn, Settings]) -> None:
    api, settings = standin
    api.server_limit = 0
    with pytest.raises(QuotaExceededError) as error:
        await HetznerProvider(HetznerConfig.of(settings)).create_node(create("n-1"))
    assert "resource_limit_exceeded" in error.value.one_line()
    assert error.value.hint == "raise your Hetzner limit or lower max_nodes"


async def test_missing_capacity_and_unknown_choices_have_their_own_errors(
    standin: tuple[HetznerStandIn, Settings],
) -> None:
    api, settings = standin
    provider = HetznerProvider(HetznerConfig.of(settings))
    api.faults.append(Fault(code="resource_unavailable", message="no capacity", location="nbg1"))
    with pytest.raises(CapacityUnavailableError):
        await provider.create_node(create("n-1"))
    with pytest.raises(UnknownServerChoiceError):
        await provider.create_node(create("n-2", "cx999"))
    with pytest.raises(UnknownServerChoiceError):
        await provider.create_node(create("n-3", "cx42", "hel1"))  # not offered there
    assert await provider.list_nodes("cpu") == []


async def test_a_wrong_token_or_a_dead_endpoint_is_a_clear_error(
    standin: tuple[HetznerStandIn, Settings],
) -> None:
    settings = standin[1]
    with pytest.raises(ConfigError) as error:
        await HetznerProvider(
            HetznerConfig.of(settings.model_copy(update={"hcloud_token": "wrong"}))
        ).list_nodes("x")
    assert "HCLOUD_TOKEN" in error.value.hint
    with pytest.raises(ConfigError):
        HetznerProvider(HetznerConfig.of(settings.model_copy(update={"hcloud_token": None})))
    dead = settings.model_copy(update={"hcloud_endpoint": f"http://127.0.0.1:{free_port()}/v1"})
    with pytest.raises(ServiceUnavailableError):
        await HetznerProvider(HetznerConfig.of(dead)).list_nodes("x")


async def test_booting_applies_the_user_data_and_deleting_kills_the_agent(
    standin: tuple[HetznerStandIn, Settings],
) -> None:
    api, settings = standin
    provider = HetznerProvider(HetznerConfig.of(settings))
    info = await provider.create_node(create("n-1"))
    server = api.servers[info.server_id]
    async with asyncio.timeout(10):
        while server.process is None:
            await asyncio.sleep(0.05)
    process = server.process
    assert (server.root / "etc/rgrid/agent.env").stat().st_mode & 0o777 == 0o600
    log = (server.root / "cloud-init.log").read_text()
    assert "skipped runcmd: /opt/rgrid/venv/bin/pip install" in log
    assert "started rgrid-agent.service" in log
    await provider.delete_node(info.server_id)
    await provider.delete_node(info.server_id)  # gone already: not an error
    assert process.returncode is not None
    assert await provider.list_nodes("cpu") == []


def _client_pair(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rgrid-node")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "client.crt", directory / "client.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_a_node_whose_temporal_is_away_says_so_and_retries_with_its_tls_credentials(
    standin: tuple[HetznerStandIn, Settings], tmp_path: Path
) -> None:
    api, settings = standin
    cert, key = _client_pair(tmp_path)
    settings = settings.model_copy(update={"temporal_tls_cert": cert, "temporal_tls_key": key})
    info = await HetznerProvider(HetznerConfig.of(settings)).create_node(create("n-tls"))
    server = api.servers[info.server_id]
    # systemd's LoadCredential= copies, where agent.env points the dynamic user.
    credentials = server.root / "run/credentials/rgrid-agent.service"
    log = server.root / "rgrid-agent.service.log"

    def retries() -> int:
        return log.read_text().count('"temporal_unreachable"') if log.exists() else 0

    async with asyncio.timeout(60):
        while retries() < 2:
            assert server.process is None or server.process.returncode is None, log.read_text()
            await asyncio.sleep(0.2)
    assert (credentials / "temporal-client.crt").read_bytes() == cert.read_bytes()
    assert (credentials / "temporal-client.key").read_bytes() == key.read_bytes()
    assert server.process is not None and server.process.returncode is None  # still trying
    assert "Traceback" not in log.read_text()


def test_label_selectors_follow_hetzners_syntax() -> None:
    labels = {"rgrid": "node", "rgrid-class": "cpu"}
    assert matches_selector(labels, "rgrid=node,rgrid-class=cpu")
    assert matches_selector(labels, "rgrid==node,rgrid-class!=gpu,!team")
    assert matches_selector(labels, "rgrid")
    assert not matches_selector(labels, "rgrid-class=gpu")
    assert not matches_selector(labels, "team")
    assert not matches_selector(labels, "!rgrid")
