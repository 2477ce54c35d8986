"""`create_app(settings)`: the local control plane's FastAPI app.

The v1 router is mounted at `/api/v1` and again at `/api` (compat), like the real platform.
Trailing slashes follow the contract (§1.2): a route registered without a slash answers 404 to a
GET with one (405 to other methods); a route registered with a slash redirects a slash-less GET
(307) and answers 405 to other slash-less methods.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from dumont_plan import __version__
from dumont_plan.server.context import AppState
from dumont_plan.server.envelope import install_error_handlers
from dumont_plan.server.faults import FaultMiddleware, FaultQueue
from dumont_plan.server.reconciler import Reconciler
from dumont_plan.server.routes import auth, health, history, instances, jobs, local
from dumont_plan.server.security import load_or_create_secret
from dumont_plan.server.settings import ServerSettings
from dumont_plan.server.store import Store

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def build_v1_router(settings: ServerSettings) -> APIRouter:
    v1 = APIRouter()
    v1.include_router(auth.router)
    v1.include_router(jobs.router)
    v1.include_router(instances.router)
    v1.include_router(history.router)
    if settings.enable_test_hooks:
        v1.include_router(local.router)
    return v1


class CountRequests:
    """Counts requests by `METHOD path` (read through the test hooks); plain ASGI, cheap."""

    def __init__(self, app: ASGIApp, counter: Counter[str]) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.counter[f"{scope['method']} {scope['path']}"] += 1
        await self.app(scope, receive, send)


def _has_route(app: FastAPI, scope: Scope) -> bool:
    """Whether a route other than the /api fallback matches `scope` (any method)."""
    for route in app.router.routes:
        if getattr(route, "name", None) == "api_fallback":
            continue
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            return True
    return False


def create_app(settings: ServerSettings, *, background: bool = True) -> FastAPI:
    """Build the app; `background=False` skips the reconciler loop (for pure API tests)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    state = AppState(
        settings=settings,
        store=Store(settings.db_path),
        secret=load_or_create_secret(settings.data_dir),
    )
    reconciler = Reconciler(state)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if background:
            reconciler.start()
        try:
            yield
        finally:
            reconciler.stop()

    app = FastAPI(
        title="Dumont local control plane",
        version=__version__,
        lifespan=lifespan,
        redirect_slashes=False,
        openapi_url="/api/v1/openapi.json",
    )
    app.state.dumont = state
    app.state.reconciler = reconciler
    app.state.faults = FaultQueue(settings.fault_rate, settings.fault_seed)
    app.state.request_counts = Counter()
    install_error_handlers(app)
    app.include_router(health.router)
    v1 = build_v1_router(settings)
    app.include_router(v1, prefix="/api/v1")
    app.include_router(v1, prefix="/api", include_in_schema=False)

    @app.api_route("/api/{rest:path}", methods=ALL_METHODS, include_in_schema=False)
    def api_fallback(request: Request, rest: str) -> Response:
        path = request.url.path
        if request.method not in ("GET", "HEAD"):
            return JSONResponse({"error": "Method Not Allowed"}, status_code=405)
        if not path.endswith("/") and _has_route(app, {**request.scope, "path": path + "/"}):
            query = request.url.query
            return RedirectResponse(path + "/" + (f"?{query}" if query else ""), 307)
        return JSONResponse({"error": f"API endpoint not found: {path}"}, status_code=404)

    if settings.fault_rate > 0 or settings.enable_test_hooks:
        app.add_middleware(FaultMiddleware, faults=app.state.faults)
    app.add_middleware(CountRequests, counter=app.state.request_counts)
    return app
