"""The Hetzner Cloud provider, on the official (synchronous) `hcloud` client.

Every call runs in a thread (`asyncio.to_thread`) so the worker's event loop never blocks.
Server types, locations and hourly prices come from the API; hcloud's exceptions become
rgrid errors with a one-line hint. Every server carries rgrid's labels, so the pool can
find the ones it does not know (orphans) and delete them.
"""

from __future__ import annotations

import asyncio
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import requests
import structlog
from hcloud import APIException, Client
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.servers import BoundServer, Server
from hcloud.ssh_keys import SSHKey

from rgrid.config_parts import HetznerConfig
from rgrid.errors import (
    CapacityUnavailableError,
    ConfigError,
    ProvisioningError,
    QuotaExceededError,
    ServiceUnavailableError,
    UnknownServerChoiceError,
)
from rgrid.infra.providers import CreateNode, node_labels
from rgrid.infra.providers.cloud_init import NodeBootstrap, bootstrap_from, user_data
from rgrid.models.pool import ServerChoice, ServerInfo

log = structlog.get_logger()

MICRONS = Decimal(1_000_000)


def to_microns(amount: str) -> int:
    """A decimal price string of the API ("0.0060000000") in integer microns."""
    return int((Decimal(amount) * MICRONS).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def translate(exc: Exception, doing: str) -> Exception:
    """hcloud's and requests' exceptions as rgrid errors, each with what to do."""
    if isinstance(exc, APIException):
        code = str(exc.code)
        what = f"Hetzner refused to {doing}: {exc.message} ({code})"
        if code == "resource_limit_exceeded":
            return QuotaExceededError(what, "raise your Hetzner limit or lower max_nodes")
        if code in ("resource_unavailable", "placement_error", "server_type_unavailable"):
            return CapacityUnavailableError(what, "add another type@location to RGRID_NODE_CHOICES")
        if code in ("invalid_input", "not_found"):
            return UnknownServerChoiceError(what, "check RGRID_NODE_CHOICES and RGRID_SERVER_IMAGE")
        if code in ("unauthorized", "forbidden", "token_readonly"):
            return ConfigError(what, "set HCLOUD_TOKEN to a read-write API token of the project")
        return ProvisioningError(what, "retried automatically; see the Hetzner status page")
    if isinstance(exc, requests.RequestException):
        return ServiceUnavailableError(
            f"the Hetzner API does not answer ({type(exc).__name__})",
            "check RGRID_HCLOUD_ENDPOINT and the network",
        )
    return exc


class HetznerProvider:
    """Creates, lists and deletes rgrid's servers in one Hetzner Cloud project."""

    name = "hetzner"

    def __init__(self, config: HetznerConfig, client: Client | None = None) -> None:
        if client is None:
            if not config.token:
                raise ConfigError(
                    "RGRID_PROVIDER=hetzner needs an API token",
                    "set HCLOUD_TOKEN (Hetzner Console: project -> Security -> API tokens)",
                )
            client = Client(
                token=config.token,
                api_endpoint=config.endpoint,
                application_name="rgrid",
                timeout=30,
            )
        self._client = client
        self._join = config.join
        self._currency_code: str | None = None

    async def create_node(self, request: CreateNode) -> ServerInfo:
        """Create the server of a node (it boots and starts its agent on its own)."""
        return await asyncio.to_thread(self._create, request)

    async def list_nodes(self, node_class: str) -> list[ServerInfo]:
        """Every server carrying rgrid's labels for this node class."""
        selector = ",".join(f"{k}={v}" for k, v in node_labels(node_class).items())
        return await asyncio.to_thread(self._list, selector)

    async def delete_node(self, server_id: int) -> None:
        """Delete a server; one that is already gone counts as deleted."""
        await asyncio.to_thread(self._delete, server_id)

    # --- synchronous parts, run in threads ---

    def _create(self, request: CreateNode) -> ServerInfo:
        choice = request.choice
        try:
            server_type = self._client.server_types.get_by_name(choice.server_type)
            if server_type is None:
                raise UnknownServerChoiceError(
                    f"Hetzner has no server type {choice.server_type!r}",
                    "pick one from `hcloud server-type list` for RGRID_NODE_CHOICES",
                )
            price, currency = self._hourly_price(server_type.prices or [], choice)
            boot: NodeBootstrap = bootstrap_from(
                self._join,
                node_id=request.node_id,
                node_class=request.node_class,
                slots=request.slots,
                hourly_price_microns=price,
            )
            response = self._client.servers.create(
                name=request.node_id,
                server_type=server_type,
                image=Image(name=request.image),
                location=Location(name=choice.location),
                ssh_keys=[SSHKey(name=request.ssh_key)] if request.ssh_key else None,
                user_data=user_data(boot),
                labels={**request.labels, **node_labels(request.node_class, request.node_id)},
            )
        except (APIException, requests.RequestException) as exc:
            raise translate(exc, f"create {choice.server_type} in {choice.location}") from exc
        info = self._info(response.server)
        return info.model_copy(update={"hourly_price_microns": price, "currency": currency})

    def _hourly_price(self, prices: list[dict[str, Any]], choice: ServerChoice) -> tuple[int, str]:
        for entry in prices:
            if entry.get("location") == choice.location:
                # Net prices: what Hetzner invoices before VAT, which businesses reclaim.
                return to_microns(entry["price_hourly"]["net"]), self._currency()
        raise UnknownServerChoiceError(
            f"Hetzner offers no {choice.server_type} in {choice.location}",
            "pick another type@location for RGRID_NODE_CHOICES",
        )

    def _currency(self) -> str:
        if self._currency_code is None:
            try:
                answer = self._client.request("GET", "/pricing")
                self._currency_code = str(answer["pricing"]["currency"])
            except (APIException, KeyError):
                return "EUR"  # every Hetzner Cloud account bills in EUR
        return self._currency_code

    def _list(self, selector: str) -> list[ServerInfo]:
        try:
            servers = self._client.servers.get_all(label_selector=selector)
        except (APIException, requests.RequestException) as exc:
            raise translate(exc, "list servers") from exc
        return [self._info(server) for server in servers]

    def _delete(self, server_id: int) -> None:
        try:
            self._client.servers.delete(Server(id=server_id))
        except APIException as exc:
            if exc.code == "not_found":
                return
            raise translate(exc, f"delete server {server_id}") from exc
        except requests.RequestException as exc:
            raise translate(exc, f"delete server {server_id}") from exc
        log.info("server_deleted", server=server_id)

    def _info(self, server: BoundServer) -> ServerInfo:
        server_type = server.server_type
        location = (server.location.name if server.location else "") or ""
        price = 0
        for entry in (server_type.prices if server_type else None) or []:
            if entry.get("location") == location:
                price = to_microns(entry["price_hourly"]["net"])
        return ServerInfo(
            server_id=server.id or 0,
            name=server.name or "",
            status=server.status or "unknown",
            server_type=(server_type.name if server_type else "") or "",
            location=location,
            created_at=server.created,
            labels=dict(server.labels or {}),
            hourly_price_microns=price,
            currency=self._currency() if price else "EUR",
        )
