"""A local stand-in of the Hetzner Cloud API, for tests and demos without Hetzner.

The real `hcloud` client talks to it over HTTP (`api_endpoint=http://127.0.0.1:N/v1`). It
serves what rgrid calls: servers (create, get, list by label selector, delete), actions,
server types with per-location hourly prices, locations, images and pricing, with errors
in Hetzner's JSON format (`{"error": {"code", "message", "details"}}`).

"Booting" a server applies its real cloud-init user data: every `write_files` entry is
written under the server's root dir (`<root>/server-<id>/<path>`), and each
`systemctl enable --now UNIT` / `systemctl start UNIT` in `runcmd` starts that unit's
`ExecStart` as a local process, as systemd would (tests/standins/systemd.py): with the
unit's `Environment=` and `EnvironmentFile=` (and its drop-ins' `LoadCredential=`), its
`${VAR}`s expanded from them. Only paths are rewritten: the node's
`/opt/rgrid/venv/bin/rgrid` becomes this checkout's rgrid, and absolute paths in the
environment (but /dev/...) move under the server's root. Other runcmd lines (apt, pip,
venv) and `packages` are logged to `<root>/server-<id>/cloud-init.log`, not run. Deleting
a server kills its process group.

Test hooks live under `/_standin/` (not part of Hetzner's API): inject errors for the
next creates (`faults`), cap the number of servers (`limit`, the account limit), fail
every call for a while (`outage`), crash a server (`servers/<id>/crash`).

    rgrid dev hetzner-standin --port 4000
    python -m tests.standins.hetzner --port 4000 --root DIR   (from a checkout)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shlex
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
import yaml
from aiohttp import web

from tests.standins.systemd import service_command, service_section

log = structlog.get_logger()

# The catalogue: names and prices shaped like Hetzner's (net/gross per hour, EUR).
LOCATIONS = [
    {"id": 1, "name": "fsn1", "description": "Falkenstein DC Park 1", "country": "DE",
     "city": "Falkenstein", "latitude": 50.47612, "longitude": 12.370071,
     "network_zone": "eu-central"},
    {"id": 2, "name": "nbg1", "description": "Nuremberg DC Park 1", "country": "DE",
     "city": "Nuremberg", "latitude": 49.452102, "longitude": 11.076665,
     "network_zone": "eu-central"},
    {"id": 3, "name": "hel1", "description": "Helsinki DC Park 1", "country": "FI",
     "city": "Helsinki", "latitude": 60.169855, "longitude": 24.938379,
     "network_zone": "eu-central"},
]  # fmt: skip
SERVER_TYPES = [
    # (id, name, cores, memory GB, disk GB, net EUR/h, locations)
    (22, "cx22", 2, 4.0, 40, "0.0060", ("fsn1", "nbg1", "hel1")),
    (23, "cx32", 4, 8.0, 80, "0.0113", ("fsn1", "nbg1", "hel1")),
    (24, "cx42", 8, 16.0, 160, "0.0273", ("fsn1", "nbg1")),
    (104, "cpx11", 2, 2.0, 40, "0.0073", ("fsn1", "nbg1", "hel1")),
]
IMAGES = [
    {"id": 161547269, "type": "system", "status": "available", "name": "ubuntu-24.04",
     "description": "Ubuntu 24.04", "os_flavor": "ubuntu", "os_version": "24.04",
     "architecture": "x86", "rapid_deploy": True, "deprecated": None, "labels": {}},
    {"id": 114690387, "type": "system", "status": "available", "name": "debian-12",
     "description": "Debian 12", "os_flavor": "debian", "os_version": "12",
     "architecture": "x86", "rapid_deploy": True, "deprecated": None, "labels": {}},
]  # fmt: skip
VAT = "1.19"

STATUS = {
    "invalid_input": 400,
    "json_error": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "resource_limit_exceeded": 403,
    "not_found": 404,
    "uniqueness_error": 409,
    "rate_limit_exceeded": 429,
    "server_error": 500,
    "service_error": 503,
    "resource_unavailable": 503,
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _gross(net: str) -> str:
    from decimal import Decimal

    return str((Decimal(net) * Decimal(VAT)).quantize(Decimal("0.0001")))


def server_type_json(entry: tuple[Any, ...]) -> dict[str, Any]:
    """A server type as the API renders it, prices per location."""
    type_id, name, cores, memory, disk, net, locations = entry
    return {
        "id": type_id,
        "name": name,
        "description": name.upper(),
        "category": "shared",
        "cores": cores,
        "memory": memory,
        "disk": disk,
        "deprecated": False,
        "deprecation": None,
        "prices": [
            {
                "location": loc,
                "price_hourly": {"net": net, "gross": _gross(net)},
                "price_monthly": {"net": "3.79", "gross": "4.51"},
                "included_traffic": 21990232555520,
                "price_per_tb_traffic": {"net": "1.00", "gross": "1.19"},
            }
            for loc in locations
        ],
        "storage_type": "local",
        "cpu_type": "shared",
        "architecture": "x86",
        "locations": [
            {"id": next(x["id"] for x in LOCATIONS if x["name"] == loc), "name": loc,
             "deprecation": None, "available": True, "recommended": loc == "nbg1"}
            for loc in locations
        ],
    }  # fmt: skip


class ApiError(Exception):
    """An error the stand-in answers in Hetzner's format."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


@dataclass
class Fault:
    """An error the next matching server creations get (`times` of them)."""

    code: str
    message: str
    server_type: str | None = None
    location: str | None = None
    times: int = 1


@dataclass
class Server:
    data: dict[str, Any]
    root: Path
    process: asyncio.subprocess.Process | None = None
    boot: asyncio.Task[None] | None = None
    units: dict[str, str] = field(default_factory=dict)


def matches_selector(labels: dict[str, str], selector: str) -> bool:
    """Hetzner's label selector: `k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-joined (AND)."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class HetznerStandIn:
    """The API's state and handlers; `app` is the aiohttp application."""

    def __init__(self, root: Path, token: str | None = None, boot_delay_s: float = 0.0) -> None:
        self.root = root
        self.token = token
        self.boot_delay_s = boot_delay_s  # simulated time from create to "running"
        self.servers: dict[int, Server] = {}
        self.actions: dict[int, dict[str, Any]] = {}
        self.faults: list[Fault] = []
        self.server_limit: int | None = None
        self.outage_until = 0.0  # time.monotonic() until which every API call fails
        self._ids = itertools.count(1000)
        self._action_ids = itertools.count(5000)
        self.app = web.Application(middlewares=[self._errors])
        self.app.add_routes(
            [
                web.get("/v1/locations", self._locations),
                web.get("/v1/locations/{id}", self._location),
                web.get("/v1/server_types", self._server_types),
                web.get("/v1/server_types/{id}", self._server_type),
                web.get("/v1/images", self._images),
                web.get("/v1/images/{id}", self._image),
                web.get("/v1/pricing", self._pricing),
                web.get("/v1/servers", self._list_servers),
                web.post("/v1/servers", self._create_server),
                web.get("/v1/servers/{id}", self._get_server),
                web.delete("/v1/servers/{id}", self._delete_server),
                web.get("/v1/actions/{id}", self._get_action),
                web.post("/_standin/faults", self._add_fault),
                web.post("/_standin/limit", self._set_limit),
                web.post("/_standin/outage", self._outage),
                web.post("/_standin/servers/{id}/crash", self._crash),
            ]
        )
        self.app.on_cleanup.append(self._shutdown)

    # --- plumbing ---

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            if request.path.startswith("/v1/") and time.monotonic() < self.outage_until:
                raise ApiError("service_error", "the API is down (stand-in outage)")
            if request.path.startswith("/v1/") and self.token is not None:
                if request.headers.get("Authorization") != f"Bearer {self.token}":
                    raise ApiError("unauthorized", "unable to authenticate")
            return await handler(request)  # type: ignore[no-any-return]
        except ApiError as exc:
            body = {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}
            return web.json_response(body, status=STATUS.get(exc.code, 400))

    @staticmethod
    def _page(request: web.Request, key: str, items: list[Any]) -> web.Response:
        page = int(request.query.get("page", 1))
        per_page = int(request.query.get("per_page", 25))
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        pagination = {
            "page": page,
            "per_page": per_page,
            "previous_page": page - 1 if page > 1 else None,
            "next_page": page + 1 if page < last else None,
            "last_page": last,
            "total_entries": len(items),
        }
        return web.json_response({key: chunk, "meta": {"pagination": pagination}})

    @staticmethod
    def _by_id(items: list[dict[str, Any]], raw: str, kind: str) -> dict[str, Any]:
        for item in items:
            if str(item["id"]) == raw:
                return item
        raise ApiError("not_found", f"{kind} with ID '{raw}' not found")

    # --- catalogue ---

    async def _locations(self, request: web.Request) -> web.Response:
        name = request.query.get("name")
        return self._page(request, "locations", [x for x in LOCATIONS if name in (None, x["name"])])

    async def _location(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"location": self._by_id(LOCATIONS, request.match_info["id"], "location")}
        )

    async def _server_types(self, request: web.Request) -> web.Response:
        name = request.query.get("name")
        types = [server_type_json(t) for t in SERVER_TYPES if name in (None, t[1])]
        return self._page(request, "server_types", types)

    async def _server_type(self, request: web.Request) -> web.Response:
        types = [server_type_json(t) for t in SERVER_TYPES]
        return web.json_response(
            {"server_type": self._by_id(types, request.match_info["id"], "server_type")}
        )

    async def _images(self, request: web.Request) -> web.Response:
        name = request.query.get("name")
        return self._page(request, "images", [x for x in IMAGES if name in (None, x["name"])])

    async def _image(self, request: web.Request) -> web.Response:
        return web.json_response({"image": self._by_id(IMAGES, request.match_info["id"], "image")})

    async def _pricing(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "pricing": {
                    "currency": "EUR",
                    "vat_rate": "19.00",
                    "server_types": [
                        {"id": t[0], "name": t[1], "prices": server_type_json(t)["prices"]}
                        for t in SERVER_TYPES
                    ],
                }
            }
        )

    # --- servers ---

    async def _list_servers(self, request: web.Request) -> web.Response:
        selector = request.query.get("label_selector", "")
        name = request.query.get("name")
        statuses = request.query.getall("status", [])
        found = [
            s.data
            for s in self.servers.values()
            if matches_selector(s.data["labels"], selector)
            and name in (None, s.data["name"])
            and (not statuses or s.data["status"] in statuses)
        ]
        return self._page(request, "servers", found)

    def _server(self, raw: str) -> Server:
        try:
            return self.servers[int(raw)]
        except (KeyError, ValueError):
            raise ApiError("not_found", f"server with ID '{raw}' not found") from None

    async def _get_server(self, request: web.Request) -> web.Response:
        return web.json_response({"server": self._server(request.match_info["id"]).data})

    async def _create_server(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            raise ApiError("json_error", "invalid JSON in request body") from None
        name = body.get("name")
        type_name = str(body.get("server_type", ""))
        location = str(body.get("location") or "nbg1")
        image_name = str(body.get("image", ""))
        if not name:
            raise ApiError("invalid_input", "invalid input in field 'name'", {"fields": [
                {"name": "name", "messages": ["Missing data for required field."]}]})  # fmt: skip
        stype = next((t for t in SERVER_TYPES if type_name in (t[1], str(t[0]))), None)
        if stype is None:
            raise ApiError("invalid_input", f"server type {type_name} not found")
        loc = next((x for x in LOCATIONS if location in (x["name"], str(x["id"]))), None)
        if loc is None:
            raise ApiError("invalid_input", f"location {location} not found")
        if loc["name"] not in stype[6]:
            raise ApiError(
                "invalid_input", f"server type {stype[1]} is not available in {loc['name']}"
            )
        image = next((x for x in IMAGES if image_name in (x["name"], str(x["id"]))), None)
        if image is None:
            raise ApiError("invalid_input", f"image {image_name} not found")
        if any(s.data["name"] == name for s in self.servers.values()):
            raise ApiError("uniqueness_error", "server name is already used", {"fields": [
                {"name": "name"}]})  # fmt: skip
        self._take_fault(stype[1], loc["name"])
        if self.server_limit is not None and len(self.servers) >= self.server_limit:
            raise ApiError(
                "resource_limit_exceeded",
                f"server limit ({self.server_limit}) exceeded",
                {"limits": [{"name": "server_limit"}]},
            )
        server_id = next(self._ids)
        data = {
            "id": server_id,
            "name": name,
            "status": "initializing",
            "created": _now(),
            "public_net": {
                "ipv4": {"id": server_id, "ip": f"127.0.{server_id // 256 % 256}.{server_id % 256}",
                         "blocked": False, "dns_ptr": f"static.{server_id}.example"},
                "ipv6": None, "floating_ips": [], "firewalls": [],
            },
            "private_net": [],
            "server_type": server_type_json(stype),
            "location": loc,
            "image": image,
            "iso": None,
            "rescue_enabled": False,
            "locked": False,
            "backup_window": None,
            "outgoing_traffic": 0,
            "ingoing_traffic": 0,
            "included_traffic": 21990232555520,
            "primary_disk_size": stype[4],
            "protection": {"delete": False, "rebuild": False},
            "labels": dict(body.get("labels") or {}),
            "volumes": [],
            "load_balancers": [],
            "placement_group": None,
        }  # fmt: skip
        server = Server(data=data, root=self.root / f"server-{server_id}")
        self.servers[server_id] = server
        action = self._action("create_server", server_id)
        server.boot = asyncio.create_task(
            self._boot(server, str(body.get("user_data") or ""), action)
        )
        return web.json_response(
            {"server": data, "action": action, "next_actions": [], "root_password": None},
            status=201,
        )

    def _take_fault(self, server_type: str, location: str) -> None:
        for fault in self.faults:
            if fault.server_type not in (None, server_type) or fault.location not in (
                None,
                location,
            ):
                continue
            fault.times -= 1
            if fault.times <= 0:
                self.faults.remove(fault)
            raise ApiError(fault.code, fault.message)

    async def _delete_server(self, request: web.Request) -> web.Response:
        server = self._server(request.match_info["id"])
        server.data["status"] = "deleting"
        action = self._action("delete_server", server.data["id"])
        await self._stop(server)
        self.servers.pop(server.data["id"], None)
        self._finish(action)
        log.info("standin_server_deleted", server=server.data["id"], name=server.data["name"])
        return web.json_response({"action": action})

    async def _get_action(self, request: web.Request) -> web.Response:
        raw = request.match_info["id"]
        action = self.actions.get(int(raw)) if raw.isdigit() else None
        if action is None:
            raise ApiError("not_found", f"action with ID '{raw}' not found")
        return web.json_response({"action": action})

    def _action(self, command: str, server_id: int) -> dict[str, Any]:
        action_id = next(self._action_ids)
        action: dict[str, Any] = {
            "id": action_id,
            "command": command,
            "status": "running",
            "progress": 0,
            "started": _now(),
            "finished": None,
            "resources": [{"id": server_id, "type": "server"}],
            "error": None,
        }
        self.actions[action_id] = action
        return action

    @staticmethod
    def _finish(action: dict[str, Any], error: dict[str, str] | None = None) -> None:
        action.update(
            status="error" if error else "success", progress=100, finished=_now(), error=error
        )

    # --- booting: the real user data, applied locally ---

    async def _boot(self, server: Server, user_data: str, action: dict[str, Any]) -> None:
        log_path = server.root / "cloud-init.log"
        try:
            server.root.mkdir(parents=True, exist_ok=True)
            await asyncio.sleep(self.boot_delay_s)
            if not user_data.startswith("#cloud-config"):
                raise ValueError("user data is not a #cloud-config document")
            config = yaml.safe_load(user_data) or {}
            with log_path.open("a") as out:
                for package in config.get("packages", []):
                    out.write(f"skipped package: {package}\n")
                for entry in config.get("write_files", []):
                    self._write_file(server, entry)
                    out.write(f"wrote {entry['path']}\n")
                server.data["status"] = "running"
                self._finish(action)
                for command in config.get("runcmd", []):
                    argv = command if isinstance(command, list) else shlex.split(command)
                    unit = _started_unit(argv)
                    if unit is None:
                        out.write(f"skipped runcmd: {shlex.join(argv)}\n")
                        continue
                    await self._start_unit(server, unit)
                    out.write(f"started {unit}\n")
        except Exception as exc:  # the server runs, but cloud-init failed: as on Hetzner
            server.data["status"] = "running"
            if action["status"] == "running":
                self._finish(action)
            with log_path.open("a") as out:
                out.write(f"cloud-init failed: {exc}\n")
            log.warning("standin_boot_failed", server=server.data["id"], error=str(exc))

    def _rooted(self, server: Server, path: str) -> Path:
        return server.root / path.lstrip("/")

    def _write_file(self, server: Server, entry: dict[str, Any]) -> None:
        target = self._rooted(server, entry["path"])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(entry.get("content", ""))
        if "permissions" in entry:
            target.chmod(int(str(entry["permissions"]), 8))

    async def _start_unit(self, server: Server, unit: str) -> None:
        unit_dir = self._rooted(server, "/etc/systemd/system")
        unit_file = unit_dir / unit
        if not unit_file.exists():
            raise FileNotFoundError(f"unit {unit} not written by user data")
        drop_ins = sorted((unit_dir / f"{unit}.d").glob("*.conf"))
        texts = [unit_file.read_text(), *(p.read_text() for p in drop_ins)]
        self._load_credentials(server, unit, texts)

        def place(value: str) -> str:
            # Besides the venv's programs, the one rewrite: absolute paths move under the root.
            rooted = value.startswith("/") and not value.startswith("/dev/")
            return str(self._rooted(server, value)) if rooted else value

        argv, env = service_command(
            texts,
            read=lambda path: self._rooted(server, path).read_text(),
            base_env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(server.root)},
            place=place,
        )
        server.units[unit] = shlex.join(argv)
        agent_log = (server.root / f"{unit}.log").open("ab")
        server.process = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            cwd=server.root,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=agent_log,
            stderr=agent_log,
            start_new_session=True,  # its own process group: deleting kills it whole
        )
        agent_log.close()
        log.info(
            "standin_unit_started", server=server.data["id"], unit=unit, pid=server.process.pid
        )

    def _load_credentials(self, server: Server, unit: str, texts: list[str]) -> None:
        """LoadCredential=NAME:PATH as systemd does it: a copy in /run/credentials/UNIT/."""
        for entry in service_section(*texts).get("LoadCredential", []):
            name, _, source = entry.partition(":")
            target = self._rooted(server, f"/run/credentials/{unit}/{name}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self._rooted(server, source).read_bytes())
            target.chmod(0o400)

    async def _stop(self, server: Server) -> None:
        if server.boot is not None and not server.boot.done():
            server.boot.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server.boot
        proc = server.process
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    # --- test hooks ---

    async def _add_fault(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.faults.append(Fault(**body))
        return web.json_response({"faults": len(self.faults)})

    async def _set_limit(self, request: web.Request) -> web.Response:
        self.server_limit = (await request.json()).get("servers")
        return web.json_response({"servers": self.server_limit})

    async def _outage(self, request: web.Request) -> web.Response:
        """Every API call fails for the next `seconds` (`service_error`, not retried)."""
        seconds = float((await request.json()).get("seconds", 10))
        self.outage_until = time.monotonic() + seconds
        return web.json_response({"seconds": seconds})

    async def _crash(self, request: web.Request) -> web.Response:
        """The machine dies: its agent is killed and the API reports it off."""
        server = self._server(request.match_info["id"])
        await self._stop(server)
        server.data["status"] = "off"
        return web.json_response({"server": server.data})

    async def _shutdown(self, _app: web.Application) -> None:
        for server in list(self.servers.values()):
            await self._stop(server)


def _started_unit(argv: list[str]) -> str | None:
    """The unit a runcmd line starts (`systemctl enable --now U`, `systemctl start U`)."""
    if not argv or Path(argv[0]).name != "systemctl":
        return None
    args = argv[1:]
    if args[:2] == ["enable", "--now"] and len(args) == 3:
        unit = args[2]
    elif args[:1] == ["start"] and len(args) == 2:
        unit = args[1]
    else:
        return None
    # docker.service is the image's, not the user data's: there is nothing to start here.
    return unit if unit.startswith("rgrid") else None


async def serve(
    port: int, root: Path, token: str | None = None, boot_delay_s: float = 0.0
) -> tuple[web.AppRunner, HetznerStandIn]:
    """Start the stand-in on 127.0.0.1:port; stop it with `await runner.cleanup()`."""
    standin = HetznerStandIn(root, token=token, boot_delay_s=boot_delay_s)
    runner = web.AppRunner(standin.app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, standin


async def run_forever(port: int, root: Path, token: str | None, boot_delay_s: float) -> None:
    """Serve until SIGTERM or SIGINT, then kill every server's agent."""
    runner, _ = await serve(port, root, token, boot_delay_s)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="The Hetzner Cloud API stand-in.")
    parser.add_argument("--port", type=int, default=4000)
    parser.add_argument("--root", type=Path, required=True, help="servers' directories")
    parser.add_argument("--token", default=os.environ.get("HCLOUD_TOKEN"))
    parser.add_argument("--boot-delay", type=float, default=0.0)
    args = parser.parse_args()
    print(f"Hetzner API stand-in on http://127.0.0.1:{args.port}/v1", flush=True)
    asyncio.run(run_forever(args.port, args.root, args.token, args.boot_delay))


if __name__ == "__main__":
    main()
