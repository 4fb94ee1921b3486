"""The batches pages: recent batches, and one batch's live progress, items and failures,
with the buttons that steer it through the same signals and update as the CLI."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rgrid.console import data
from rgrid.console.web import render, state_of
from rgrid.errors import UserInputError

ITEM_LIMIT = 500  # rows of the per-input table; failures are always listed in full
ACTIONS = frozenset({"retry_failed", "pause", "resume", "set_parallel", "cancel"})


async def list_page(request: Request) -> Response:
    found = await data.list_batches(state_of(request).session)
    return render(request, "batches.html", batches=found)


async def batch_page(request: Request) -> Response:
    batch_id = request.path_params["batch_id"]
    view = await data.batch_view(state_of(request).session, batch_id, ITEM_LIMIT)
    return render(request, "batch.html", batch_id=batch_id, view=view, flash=None)


async def live_fragment(request: Request) -> Response:
    batch_id = request.path_params["batch_id"]
    view = await data.batch_view(state_of(request).session, batch_id, ITEM_LIMIT)
    return render(request, "_batch_live.html", batch_id=batch_id, view=view, flash=None)


async def action(request: Request) -> Response:
    batch_id = request.path_params["batch_id"]
    name = request.path_params["action"]
    if name not in ACTIONS:
        raise UserInputError(f"no batch action {name!r}", "use the page's buttons")
    parallel = 0
    if name == "set_parallel":
        form = await request.form()
        try:
            parallel = int(str(form.get("parallel", "")))
        except ValueError as err:
            raise UserInputError("parallel must be a whole number", "e.g. 4") from err
    session = state_of(request).session
    flash = await data.batch_action(session, batch_id, name, parallel)
    view = await data.batch_view(session, batch_id, ITEM_LIMIT)
    return render(request, "_batch_live.html", batch_id=batch_id, view=view, flash=flash)


ROUTES = [
    Route("/batches", list_page),
    Route("/batches/{batch_id}", batch_page),
    Route("/batches/{batch_id}/live", live_fragment),
    Route("/batches/{batch_id}/{action}", action, methods=["POST"]),
]
