"""Connecting to Temporal, with the one data converter every rgrid client and worker uses."""

from __future__ import annotations

import asyncio
import dataclasses

import temporalio.api.failure.v1
from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverter, PayloadConverter
from temporalio.exceptions import ApplicationError

from rgrid.config import Settings
from rgrid.errors import Failure, ServiceUnavailableError
from rgrid.infra.codec import EncryptionCodec, Keyring, load_keyring

# A script's own failure says all in its message ("script exited with code 3: ..."); the
# SDK's stack trace of the workflow that reported it would only stand in front of that.
_USER_FAILURES = frozenset({Failure.SCRIPT_FAILED, Failure.SCRIPT_TIMED_OUT})


class ScriptFailureConverter(DefaultFailureConverter):
    """The default failure converter, minus stack traces on script failures."""

    def to_failure(
        self,
        exception: BaseException,
        payload_converter: PayloadConverter,
        failure: temporalio.api.failure.v1.Failure,
    ) -> None:
        super().to_failure(exception, payload_converter, failure)
        if isinstance(exception, ApplicationError) and exception.type in _USER_FAILURES:
            failure.stack_trace = ""


def data_converter(keyring: Keyring) -> DataConverter:
    """pydantic models in, AES-256-GCM payloads out (see rgrid.infra.codec)."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(keyring),
        failure_converter_class=ScriptFailureConverter,
    )


def keyring_of(settings: Settings) -> Keyring:
    """The codec keys of this deployment: RGRID_CODEC_KEY, else the key file in home."""
    return load_keyring(settings.home, settings.codec_key)


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
    converter = data_converter(keyring_of(settings))
    try:
        async with asyncio.timeout(timeout_s):
            return await Client.connect(
                address,
                namespace=settings.temporal_namespace,
                api_key=settings.temporal_api_key,
                tls=tls,
                data_converter=converter,
            )
    except (RuntimeError, TimeoutError, OSError) as exc:
        hint = (
            "start it with `rgrid dev start`"
            if settings.embedded
            else "check RGRID_TEMPORAL_ADDRESS and that the server is up"
        )
        raise ServiceUnavailableError(f"Temporal at {address} does not answer", hint) from exc
