"""Connecting to Temporal, and the search attributes rgrid sets on its workflows."""

from __future__ import annotations

import asyncio

from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter

from rgrid.config import Settings
from rgrid.errors import ServiceUnavailableError


async def connect(settings: Settings, timeout_s: float = 10.0) -> Client:
    """A client for the configured Temporal, or ServiceUnavailableError naming it."""
    address = settings.effective_temporal_address
    tls: TLSConfig | bool = False
    if settings.temporal_tls_cert and settings.temporal_tls_key:
        tls = TLSConfig(
            client_cert=settings.temporal_tls_cert.read_bytes(),
            client_private_key=settings.temporal_tls_key.read_bytes(),
        )
    elif settings.temporal_api_key:
        tls = True
    try:
        async with asyncio.timeout(timeout_s):
            return await Client.connect(
                address,
                namespace=settings.temporal_namespace,
                api_key=settings.temporal_api_key,
                tls=tls,
                data_converter=pydantic_data_converter,
            )
    except (RuntimeError, TimeoutError, OSError) as exc:
        hint = (
            "start it with `rgrid dev start`"
            if settings.embedded
            else "check RGRID_TEMPORAL_ADDRESS and that the server is up"
        )
        raise ServiceUnavailableError(f"Temporal at {address} does not answer", hint) from exc
