"""What every page of the console shares: its state, the templates and their filters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from rgrid.client.session import Session
from rgrid.console.data import Phase, format_microns
from rgrid.console.security import Access

HERE = Path(__file__).parent


@dataclass
class ConsoleState:
    """What every route reads: the session, the access rules, where the Temporal UI is."""

    session: Session
    access: Access
    temporal_ui: str | None = None  # None: the embedded server's UI


def state_of(request: Request) -> ConsoleState:
    return request.app.state.console  # type: ignore[no-any-return]


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _size(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{value} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}s" if value < 10 else f"{value:.1f}s"


PHASE_CLASS = {
    Phase.SUCCEEDED: "ok",
    Phase.FAILED: "bad",
    Phase.TIMED_OUT: "bad",
    Phase.CANCELLED: "warn",
}

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    enable_async=False,
)
templates.filters.update(
    money=format_microns,
    when=_when,
    size=_size,
    seconds=_seconds,
    phase_class=lambda phase: PHASE_CLASS.get(phase, "live"),
)


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A template with what every page needs (the CSRF token for htmx, the nav)."""
    html = templates.get_template(name).render(
        request=request, csrf=request.scope.get("state", {}).get("csrf", ""), **context
    )
    return HTMLResponse(html, status_code=status_code)
