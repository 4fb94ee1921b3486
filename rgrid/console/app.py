"""The console's ASGI app: routes, templates, access rules and one-line errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from rgrid.console import batches, costs, executions
from rgrid.console.data import NotFoundError, RgridError, UnsafePathError
from rgrid.console.security import AccessMiddleware
from rgrid.console.web import HERE, ConsoleState, render
from rgrid.errors import ServiceUnavailableError, UserInputError


def _status_for(exc: RgridError) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, UnsafePathError | UserInputError):
        return 400
    if isinstance(exc, ServiceUnavailableError):
        return 503
    return 500


async def rgrid_error(request: Request, exc: Exception) -> Response:
    """A user-visible error is one line, on a page or in the fragment that asked."""
    assert isinstance(exc, RgridError)
    status = _status_for(exc)
    if request.headers.get("hx-request"):
        return render(request, "_error.html", status, message=exc.one_line())
    return render(request, "error.html", status, message=exc.one_line())


async def healthz(_: Request) -> Response:
    return PlainTextResponse("ok\n")


async def home(_: Request) -> Response:
    return RedirectResponse("/executions", 303)


def create_app(state: ConsoleState, close_session: bool = True) -> Starlette:
    """The console for one deployment."""

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await state.session.ledger()  # opened once, before the first request
        yield
        if close_session:
            await state.session.close()

    app = Starlette(
        routes=[
            Route("/", home),
            Route("/healthz", healthz),
            *executions.ROUTES,
            *batches.ROUTES,
            *costs.ROUTES,
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[Middleware(AccessMiddleware, access=state.access)],
        exception_handlers={RgridError: rgrid_error},
        lifespan=lifespan,
    )
    app.state.console = state
    return app
