"""The codec server's masking and its token and origin rules, through a real aiohttp
server on a free port (the e2e tests drive it from the Temporal CLI and the Web UI)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from rgrid.client.codec_server import build_app, mask
from rgrid.infra.codec import MASK, CodecKey, EncryptionCodec, Keyring
from tests.conftest import free_port

RING = Keyring([CodecKey.generate()])
UI = "http://127.0.0.1:8233"


def test_sealed_values_and_secret_looking_env_values_are_masked_and_nothing_else() -> None:
    sealed = RING.seal("DB_URL", "postgres://u:pw@db")
    spec = {
        "script": {"name": "job.py"},
        "env": {"MODE": "fast", "API_TOKEN": "plain-from-an-old-run"},
        "secrets": {"DB_URL": sealed},
        "args": ["x", sealed],
    }
    assert mask(spec) == {
        "script": {"name": "job.py"},
        "env": {"MODE": "fast", "API_TOKEN": MASK},
        "secrets": {"DB_URL": MASK},
        "args": ["x", MASK],
    }


@pytest.fixture
async def server() -> AsyncIterator[str]:
    runner = web.AppRunner(build_app(RING, "the-token", [UI]))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def encrypted_body(value: object) -> str:
    plain = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())
    return json_format.MessageToJson(Payloads(payloads=await EncryptionCodec(RING).encode([plain])))


async def test_decode_needs_the_token_and_masks_what_it_returns(server: str) -> None:
    body = await encrypted_body({"secrets": {"K": RING.seal("K", "v")}, "n": 1})
    headers = {"Content-Type": "application/json", "Origin": UI}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server}/the-token/decode", data=body, headers=headers) as r:
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == UI
            [payload] = json_format.Parse(await r.text(), Payloads()).payloads
            assert json.loads(payload.data) == {"secrets": {"K": MASK}, "n": 1}
        async with http.post(f"{server}/decode", data=body, headers=headers) as r:
            assert r.status == 401
        async with http.post(f"{server}/the-tokeN/decode", data=body, headers=headers) as r:
            assert r.status == 401
        bearer = {**headers, "Authorization": "Bearer the-token"}
        async with http.post(f"{server}/decode", data=body, headers=bearer) as r:
            assert r.status == 200
        other = {**headers, "Origin": "http://127.0.0.1:9999"}
        async with http.post(f"{server}/the-token/decode", data=body, headers=other) as r:
            assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers


async def test_encode_then_decode_round_trips_for_the_ui(server: str) -> None:
    plain = json_format.MessageToJson(
        Payloads(payloads=[Payload(metadata={"encoding": b"json/plain"}, data=b'{"a": 1}')])
    )
    headers = {"Content-Type": "application/json", "Authorization": "Bearer the-token"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server}/encode", data=plain, headers=headers) as r:
            encoded = await r.text()
        assert b'{"a": 1}' not in encoded.encode()
        async with http.post(f"{server}/decode", data=encoded, headers=headers) as r:
            [payload] = json_format.Parse(await r.text(), Payloads()).payloads
            assert json.loads(payload.data) == {"a": 1}
