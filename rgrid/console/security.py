"""Who may use the console, and that every action comes from its own pages.

Alone on a machine the console listens on loopback and prints a URL with a token made at
start (as Jupyter does); opening it sets an HttpOnly, SameSite=Strict session cookie, so
the token leaves the address bar at once. A team runs it with a configured token, or
behind a reverse proxy that authenticates users and names them in a header.

Every request that changes something (POST) must carry the session's CSRF token, an HMAC
of the session id: a page of another site can neither read it nor guess it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlencode

from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "rgrid_console"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PATHS = frozenset({"/healthz"})


@dataclass
class Access:
    """The console's access rules: the login token and, in team mode, a proxy's header."""

    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    proxy_header: str | None = None  # e.g. X-Forwarded-User, set by the reverse proxy
    secure_cookie: bool = False  # only sent over https (behind a TLS proxy)
    # Signs session ids and CSRF tokens; new at every start, so restarts end sessions.
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def _sign(self, purpose: str, value: str) -> str:
        return hmac.new(self.key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def new_session(self) -> str:
        """A cookie value: a random session id and its signature."""
        sid = secrets.token_urlsafe(16)
        return f"{sid}.{self._sign('session', sid)}"

    def session_id(self, cookie: str | None) -> str | None:
        """The session id of a cookie this console set, else None."""
        if not cookie or "." not in cookie:
            return None
        sid, signature = cookie.rsplit(".", 1)
        return sid if hmac.compare_digest(signature, self._sign("session", sid)) else None

    def csrf_token(self, sid: str) -> str:
        """The CSRF token of a session (or of a proxy's user)."""
        return self._sign("csrf", sid)

    def token_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def login_url(self, base: str) -> str:
        """The URL to open: it carries the token once."""
        return f"{base}/?{urlencode({'token': self.token})}"


def refused(message: str, status: int) -> Response:
    return PlainTextResponse(message + "\n", status_code=status)


class AccessMiddleware:
    """Authenticates every request and checks the CSRF token of every action."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        response = await self._check(request, scope)
        if response is not None:
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _check(self, request: Request, scope: Scope) -> Response | None:
        access = self.access
        sid: str | None = None
        if access.proxy_header and (user := request.headers.get(access.proxy_header)):
            sid = f"proxy:{user}"
        if sid is None:
            sid = access.session_id(request.cookies.get(COOKIE))
        if sid is None:
            bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if access.token_ok(bearer or None):
                sid = "bearer"
        given = request.query_params.get("token")
        if given is not None:
            if not access.token_ok(given):
                return refused(
                    "refused: the token is wrong: open the URL `rgrid console` printed", 403
                )
            if request.method in SAFE_METHODS:
                # Trade the token for a session cookie and drop it from the address bar.
                rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                target = URL(scope=scope).replace(query=urlencode(rest))
                redirect = RedirectResponse(
                    target.path + (f"?{target.query}" if target.query else ""), 303
                )
                redirect.set_cookie(
                    COOKIE,
                    access.new_session(),
                    httponly=True,
                    samesite="strict",
                    secure=access.secure_cookie,
                    path="/",
                )
                return redirect
        if sid is None:
            return refused(
                "refused: no console session: open the URL with its token that "
                "`rgrid console` printed",
                401,
            )
        scope.setdefault("state", {})["csrf"] = access.csrf_token(sid)
        if request.method not in SAFE_METHODS and sid != "bearer":
            # In a header only (htmx sends it with every request): a form another site
            # posts cannot set one, and the body stays unread for the route.
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), access.csrf_token(sid).encode()):
                return refused(
                    "refused: the action lacks this page's CSRF token: reload the page", 403
                )
        return None
