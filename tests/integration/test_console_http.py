"""The console's rules over HTTP, through the real ASGI app on a real SQLite ledger and
local storage: who gets in, which actions pass the CSRF check, what may be downloaded."""

from __future__ import annotations

import hashlib
import io
import re
import socket
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from rgrid.client.session import Session
from rgrid.config import load_settings
from rgrid.console.app import create_app
from rgrid.console.data import MASK, masked_env
from rgrid.console.security import COOKIE, Access
from rgrid.console.server import bind, serve
from rgrid.console.web import ConsoleState
from rgrid.errors import UserInputError
from rgrid.infra.storage.base import output_prefix
from rgrid.models.execution import ExecutionStatus, OutputFile, Phase

pytestmark = pytest.mark.integration

SECRET_BYTES = b"outside the outputs"


@dataclass
class Site:
    client: httpx.AsyncClient
    access: Access
    session: Session


def output(path: str, data: bytes) -> OutputFile:
    return OutputFile(path=path, size=len(data), sha256=hashlib.sha256(data).hexdigest())


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    settings = load_settings(home=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path}/l.db")
    session = Session(settings)
    storage = session.storage
    await storage.put_bytes(output_prefix("exec-a") + "out/ok.txt", b"the output")
    await storage.put_bytes(output_prefix("exec-a") + "pic.png", b"\x89PNG fake")
    await storage.put_bytes(output_prefix("exec-a") + "draw.svg", b"<svg><script/></svg>")
    await storage.put_bytes("outputs/escape.txt", SECRET_BYTES)  # beside, not inside
    await storage.put_bytes(output_prefix("exec-b") + "theirs.txt", SECRET_BYTES)
    listed = [
        output("out/ok.txt", b"the output"),
        output("pic.png", b"\x89PNG fake"),
        output("draw.svg", b"<svg><script/></svg>"),
        # A name no honest node records, listed anyway: it must still be refused.
        output("../escape.txt", SECRET_BYTES),
    ]
    ledger = await session.ledger()
    for execution_id, outputs in (("exec-a", listed), ("exec-b", [])):
        await ledger.upsert(
            ExecutionStatus(
                execution_id=execution_id,
                phase=Phase.SUCCEEDED,
                script="job.py",
                created_at=datetime.now(UTC),
                outputs=outputs,
            )
        )
    access = Access(proxy_header="X-Forwarded-User")
    app = create_app(ConsoleState(session=session, access=access), close_session=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield Site(client, access, session)
    await session.close()


async def login(site: Site) -> dict[str, str]:
    """Open the token URL; the session cookie, as a header of its own."""
    response = await site.client.get(f"/executions?token={site.access.token}&status=succeeded")
    assert response.status_code == 303
    # The token leaves the address bar; the other parameters stay.
    assert response.headers["location"] == "/executions?status=succeeded"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    value = response.cookies[COOKIE]
    site.client.cookies.clear()  # each request below says which session it is
    return {"cookie": f"{COOKIE}={value}"}


async def test_the_token_url_logs_in_and_nothing_else_does(site: Site) -> None:
    cookies = await login(site)
    assert (await site.client.get("/executions", headers=cookies)).status_code == 200
    assert (await site.client.get("/executions")).status_code == 401
    assert (await site.client.get("/executions?token=wrong")).status_code == 403
    forged = Access().new_session()  # signed by another console's key
    forged_cookie = {"cookie": f"{COOKIE}={forged}"}
    assert (await site.client.get("/executions", headers=forged_cookie)).status_code == 401
    bearer = {"authorization": f"Bearer {site.access.token}"}
    assert (await site.client.get("/executions", headers=bearer)).status_code == 200
    assert (await site.client.get("/healthz")).status_code == 200  # for a service's checks


async def test_a_reverse_proxys_header_logs_in_and_is_trusted_only_on_loopback(
    site: Site,
) -> None:
    page = await site.client.get("/nodes", headers={"X-Forwarded-User": "ana"})
    assert page.status_code == 200
    with pytest.raises(UserInputError, match="proxy-header"):
        serve(site.session, site.access, "0.0.0.0", 0, None, print)


async def test_every_action_needs_the_csrf_token_of_its_own_session(site: Site) -> None:
    cookies = await login(site)
    page = await site.client.get("/executions", headers=cookies)
    token = re.search(r'"X-CSRF-Token": "([0-9a-f]+)"', page.text)
    assert token is not None
    post = "/batches/batch-x/no-such-action"
    assert (await site.client.post(post, headers=cookies)).status_code == 403
    other = await login(site)  # another browser: another session, another token
    stolen = {"x-csrf-token": token.group(1)}
    assert (await site.client.post(post, headers={**other, **stolen})).status_code == 403
    passed = await site.client.post(post, headers={**cookies, **stolen})
    assert passed.status_code == 400 and "no batch action" in passed.text  # past the check


async def test_downloads_never_leave_the_executions_outputs(site: Site) -> None:
    cookies = await login(site)
    base = "/executions/exec-a/outputs"
    good = await site.client.get(f"{base}/out/ok.txt", headers=cookies)
    assert good.status_code == 200 and good.content == b"the output"
    assert good.headers["content-disposition"].startswith("attachment")
    for attempt, status in (
        ("..%2Fescape.txt", 400),  # listed in the ledger, and still refused
        ("%2e%2e/%2e%2e/l.db", 400),
        ("%2Fetc%2Fpasswd", 400),
        ("..%2Fexec-b%2Ftheirs.txt", 400),
        ("..%5Cescape.txt", 400),
        ("theirs.txt", 404),  # another execution's output, by its bare name
    ):
        refused = await site.client.get(f"{base}/{attempt}", headers=cookies)
        assert refused.status_code == status, attempt
        assert SECRET_BYTES not in refused.content
    archive = await site.client.get("/executions/exec-a/outputs.zip", headers=cookies)
    with zipfile.ZipFile(io.BytesIO(archive.content)) as bundle:
        assert sorted(bundle.namelist()) == ["draw.svg", "out/ok.txt", "pic.png"]


async def test_only_pictures_show_inline_and_then_sandboxed(site: Site) -> None:
    cookies = await login(site)
    base = "/executions/exec-a/outputs"
    picture = await site.client.get(f"{base}/pic.png?inline=1", headers=cookies)
    assert picture.headers["content-type"] == "image/png"
    assert picture.headers["content-disposition"].startswith("inline")
    assert picture.headers["content-security-policy"] == "sandbox"
    drawing = await site.client.get(f"{base}/draw.svg?inline=1", headers=cookies)
    assert drawing.headers["content-disposition"].startswith("attachment")
    assert drawing.headers["content-type"] == "application/octet-stream"


def test_secret_looking_environment_values_are_masked() -> None:
    shown = masked_env({"API_TOKEN": "t", "DB_PASSWORD": "p", "MODE": "fast", "KEY": "k"})
    assert shown == {"API_TOKEN": MASK, "DB_PASSWORD": MASK, "MODE": "fast", "KEY": MASK}


def test_a_taken_port_is_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserInputError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind("127.0.0.1", port)
