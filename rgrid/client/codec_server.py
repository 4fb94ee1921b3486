"""The codec server: lets Temporal's Web UI (and `temporal --codec-endpoint`) show rgrid's
encrypted payloads to whoever holds its token, with every secret value masked.

After Temporal's encryption sample (samples-python/encryption/codec_server.py): POST
`/decode` and `/encode` take and return `{"payloads": [...]}` in protobuf JSON. The token
comes as the first path segment (`http://host:port/<token>/decode`, the form the UI's
codec endpoint setting can carry) or as `Authorization: Bearer <token>`. CORS answers only
the Web UI's own origin.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import hdrs, web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from rgrid.cache.key import is_secret
from rgrid.client.codec_token import token_of
from rgrid.config import Settings
from rgrid.errors import ConfigError
from rgrid.infra.codec import MASK, EncryptionCodec, Keyring, is_sealed
from rgrid.infra.temporal import keyring_of

_JSON = b"json/plain"


def ui_origins(settings: Settings) -> list[str]:
    """The embedded Web UI's origins (by its address and, on loopback, as localhost)."""
    port = settings.effective_ui_port
    origins = [f"http://{settings.dev_ip}:{port}"]
    if settings.dev_ip == "127.0.0.1":
        origins.append(f"http://localhost:{port}")
    return origins


def mask(value: Any, key: str = "") -> Any:
    """Decoded JSON with sealed values, and values of secret-looking env names, masked."""
    if isinstance(value, dict):
        under_env = key in {"env", "secrets"}
        return {
            k: MASK if under_env and isinstance(v, str) and is_secret(k) else mask(v, k)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask(item) for item in value]
    if isinstance(value, str) and is_sealed(value):
        return MASK
    return value


def _masked(payloads: Iterable[Payload]) -> list[Payload]:
    shown = []
    for payload in payloads:
        if payload.metadata.get("encoding") == _JSON:
            try:
                data = json.dumps(mask(json.loads(payload.data))).encode()
                payload = Payload(metadata=dict(payload.metadata), data=data)
            except ValueError:
                pass  # not JSON after all: shown as it is
        shown.append(payload)
    return shown


def build_app(keyring: Keyring, token: str, origins: list[str]) -> web.Application:
    """The aiohttp app: decode (masked) and encode, behind the token, CORS for origins."""
    codec = EncryptionCodec(keyring)

    def cors(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin in origins:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = "POST"
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = (
                "content-type,x-namespace,authorization"
            )
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
            response.headers[hdrs.VARY] = "Origin"
        return response

    def allowed(request: web.Request) -> bool:
        given = request.match_info.get("token") or ""
        bearer = request.headers.get(hdrs.AUTHORIZATION, "")
        if bearer.startswith("Bearer "):
            given = given or bearer.removeprefix("Bearer ")
        return hmac.compare_digest(given.encode(), token.encode())

    async def preflight(request: web.Request) -> web.StreamResponse:
        if request.headers.get(hdrs.ORIGIN) not in origins:
            return web.Response(status=403, text="origin not allowed")
        return cors(request, web.Response())

    def handler(
        apply: Callable[[list[Payload]], Awaitable[list[Payload]]],
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            origin = request.headers.get(hdrs.ORIGIN)
            if origin is not None and origin not in origins:
                return web.Response(status=403, text="origin not allowed")
            if not allowed(request):
                return cors(request, web.Response(status=401, text="a valid token is required"))
            try:
                given = json_format.Parse(await request.read(), Payloads())
                result = Payloads(payloads=await apply(list(given.payloads)))
            except (json_format.ParseError, ValueError) as exc:
                return cors(request, web.Response(status=400, text=f"bad payloads: {exc}"))
            body = json_format.MessageToJson(result)
            return cors(request, web.Response(text=body, content_type="application/json"))

        return handle

    async def decode(payloads: list[Payload]) -> list[Payload]:
        return _masked(await codec.decode(payloads))

    app = web.Application()
    for prefix in ("", "/{token}"):
        app.add_routes(
            [
                web.post(f"{prefix}/decode", handler(decode)),
                web.post(f"{prefix}/encode", handler(codec.encode)),
                web.options(f"{prefix}/decode", preflight),
                web.options(f"{prefix}/encode", preflight),
            ]
        )
    return app


async def start(
    settings: Settings, origins: list[str] | None = None, host: str | None = None
) -> web.AppRunner:
    """Serve the codec endpoint for the settings' deployment until the runner is cleaned up."""
    app = build_app(keyring_of(settings), token_of(settings.home), origins or ui_origins(settings))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    where, port = host or settings.dev_ip, settings.effective_codec_port
    try:
        await web.TCPSite(runner, where, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"the codec server cannot listen on {where}:{port} ({exc.strerror})",
            "pick a free port with --port or RGRID_CODEC_PORT",
        ) from exc
    return runner
