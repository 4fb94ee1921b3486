"""The money pages: costs by day and by project with a chart, limits and alerts; nodes
with their state, type, age, billed hours and price."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rgrid.console import data
from rgrid.console.charts import Bar, bar_chart
from rgrid.console.web import render, state_of
from rgrid.errors import UserInputError

DEFAULT_DAYS = 14


def _day(text: str, name: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError as err:
        raise UserInputError(f"{name} {text!r} is not a date", "use YYYY-MM-DD") from err


async def costs_page(request: Request) -> Response:
    params = request.query_params
    now = data.now()
    since = _day(params.get("since", ""), "since") or (now - timedelta(days=DEFAULT_DAYS)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    until = _day(params.get("until", ""), "until")
    project = params.get("project") or None
    view = await data.costs(
        state_of(request).session, since, until + timedelta(days=1) if until else None, project
    )
    chart = bar_chart(
        [Bar(d.key, d.executions_microns, d.idle_microns) for d in view.report.by_day]
    )
    return render(
        request,
        "costs.html",
        view=view,
        chart=Markup(chart),  # built from escaped parts in charts.py
        since=since.date().isoformat(),
        until=until.date().isoformat() if until else "",
        project=project or "",
        describe=data.describe,
    )


async def nodes_page(request: Request) -> Response:
    found = await data.nodes(state_of(request).session)
    return render(request, "nodes.html", nodes=found)


ROUTES = [Route("/costs", costs_page), Route("/nodes", nodes_page)]
