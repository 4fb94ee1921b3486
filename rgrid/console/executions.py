"""The executions pages: the filtered list, one execution with its timeline, live log,
outputs (preview, download one or all) and cost."""

from __future__ import annotations

import mimetypes
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlencode

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from rgrid.console import data
from rgrid.console.data import ExecutionFilter, Phase
from rgrid.console.web import render, state_of
from rgrid.errors import UserInputError

PAGE_SIZE = 50
PREVIEW_BYTES = 64 * 1024
# Shown inline as pictures; anything else (SVG included: it can carry script) downloads.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


def _date(text: str, name: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError as err:
        raise UserInputError(f"{name} {text!r} is not a date", "use YYYY-MM-DD") from err


def parse_filter(request: Request) -> tuple[ExecutionFilter, int]:
    """The list's filters and page number from the query string."""
    params = request.query_params
    status = params.get("status") or None
    if status is not None and status not in {p.value for p in Phase}:
        raise UserInputError(f"status {status!r} is unknown", "pick one from the list")
    tags: dict[str, str] = {}
    for pair in params.get("tag", "").split(","):
        if pair.strip():
            key, sep, value = pair.strip().partition("=")
            if not sep or not key:
                raise UserInputError(f"tag {pair!r} is not KEY=VALUE", "e.g. team=geo")
            tags[key] = value
    until = _date(params.get("until", ""), "until")
    where = ExecutionFilter(
        phase=Phase(status) if status else None,
        project=params.get("project") or None,
        script=params.get("script") or None,
        tags=tags,
        since=_date(params.get("since", ""), "since"),
        until=until + timedelta(days=1) if until else None,  # the whole last day
        search=params.get("q", "").strip() or None,
    )
    try:
        page = max(int(params.get("page", "1")), 1)
    except ValueError as err:
        raise UserInputError("page must be a number", "e.g. page=2") from err
    return where, page


def _query(request: Request, **changes: object) -> str:
    params = {k: v for k, v in request.query_params.items() if v}
    params.update({k: str(v) for k, v in changes.items()})
    return urlencode(params)


async def _table(request: Request) -> dict[str, Any]:
    where, page = parse_filter(request)
    found = await data.executions_page(
        state_of(request).session, where, (page - 1) * PAGE_SIZE, PAGE_SIZE
    )
    return {
        "page": found,
        "number": page,
        "pages": max((found.total + PAGE_SIZE - 1) // PAGE_SIZE, 1),
        "live": any(not row.phase.terminal for row in found.rows),
        "query": _query(request),
        "prev_query": _query(request, page=page - 1),
        "next_query": _query(request, page=page + 1),
    }


async def list_page(request: Request) -> Response:
    context = await _table(request)
    return render(
        request,
        "executions.html",
        phases=[p.value for p in Phase],
        params=request.query_params,
        **context,
    )


async def choices_fragment(request: Request) -> Response:
    """The filters' projects and scripts: a scan of every row, so loaded after the page."""
    projects, scripts = await data.filter_choices(state_of(request).session)
    return render(request, "_choices.html", projects=projects, scripts=scripts)


async def table_fragment(request: Request) -> Response:
    return render(request, "_executions_table.html", **(await _table(request)))


async def execution_page(request: Request) -> Response:
    state = state_of(request)
    execution_id = request.path_params["execution_id"]
    view = await data.execution(state.session, execution_id)
    return render(
        request,
        "execution.html",
        view=view,
        ex=view.status,
        temporal_url=data.temporal_ui_url(state.session, execution_id, state.temporal_ui),
    )


async def details_fragment(request: Request) -> Response:
    execution_id = request.path_params["execution_id"]
    try:
        details = await data.execution_details(state_of(request).session, execution_id)
    except data.RgridError as exc:  # the ledger's part of the page stands without it
        return render(request, "_error.html", message=exc.one_line())
    return render(request, "_details.html", details=details)


async def log_fragment(request: Request) -> Response:
    execution_id = request.path_params["execution_id"]
    try:
        after = max(int(request.query_params.get("after", "0")), 0)
    except ValueError as err:
        raise UserInputError("after must be a number", "it counts log chunks") from err
    part = await data.log_slice(state_of(request).session, execution_id, after)
    response = render(request, "_log.html", execution_id=execution_id, part=part)
    if part.finished and request.query_params.get("live") == "1":
        # The page was opened while it ran: its summary, outputs and timeline refresh once.
        response.headers["HX-Trigger"] = "rgrid-ended"
    return response


async def _output(request: Request) -> tuple[data.ExecutionView, data.OutputFile]:
    view = await data.execution(state_of(request).session, request.path_params["execution_id"])
    return view, data.find_output(view, request.path_params["path"])


def _private_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="rgrid-console-"))


async def download(request: Request) -> Response:
    view, output = await _output(request)
    work = _private_dir()
    try:
        dest = work / "file"
        await data.fetch_output(state_of(request).session, view, output, dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    kind = mimetypes.guess_type(output.path)[0] or "application/octet-stream"
    inline = request.query_params.get("inline") == "1" and kind in IMAGE_TYPES
    return FileResponse(
        dest,
        media_type=kind if inline else "application/octet-stream",
        filename=PurePosixPath(output.path).name,
        content_disposition_type="inline" if inline else "attachment",
        headers={"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"},
        background=BackgroundTask(shutil.rmtree, work, ignore_errors=True),
    )


async def download_all(request: Request) -> Response:
    view = await data.execution(state_of(request).session, request.path_params["execution_id"])
    if not view.status.outputs:
        raise data.NotFoundError(f"{view.status.execution_id} has no outputs", "nothing to zip")
    work = _private_dir()
    try:
        archive = await data.zip_outputs(state_of(request).session, view, work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return FileResponse(
        archive,
        media_type="application/zip",
        filename=archive.name,
        background=BackgroundTask(shutil.rmtree, work, ignore_errors=True),
    )


async def preview(request: Request) -> Response:
    view, output = await _output(request)
    kind = mimetypes.guess_type(output.path)[0] or ""
    text: str | None = None
    if kind not in IMAGE_TYPES:
        head = await data.read_output_head(state_of(request).session, view, output, PREVIEW_BYTES)
        # A NUL byte says binary: offered as a download only.
        text = None if b"\0" in head else head.decode("utf-8", "replace")
    return render(
        request,
        "_preview.html",
        ex=view.status,
        output=output,
        image=kind in IMAGE_TYPES,
        text=text,
        cut=output.size > PREVIEW_BYTES,
    )


async def cancel(request: Request) -> Response:
    execution_id = request.path_params["execution_id"]
    await data.request_cancel(state_of(request).session, execution_id)
    return render(request, "_flash.html", message=f"{execution_id}: cancel requested")


ROUTES = [
    Route("/executions", list_page),
    Route("/executions/table", table_fragment),
    Route("/executions/choices", choices_fragment),
    Route("/executions/{execution_id}", execution_page),
    Route("/executions/{execution_id}/details", details_fragment),
    Route("/executions/{execution_id}/log", log_fragment),
    Route("/executions/{execution_id}/outputs.zip", download_all),
    Route("/executions/{execution_id}/outputs/{path:path}", download),
    Route("/executions/{execution_id}/preview/{path:path}", preview),
    Route("/executions/{execution_id}/cancel", cancel, methods=["POST"]),
]
