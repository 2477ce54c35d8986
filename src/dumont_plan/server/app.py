"""`create_app(settings)`: the local control plane's FastAPI app.

The v1 router is mounted at `/api/v1` and again at `/api` (compat), like the real platform.
Trailing slashes follow the contract (§1.2): a route registered without a slash answers 404 to a
GET with one (405 to other methods); a route registered with a slash redirects a slash-less GET
(307) and answers 405 to other slash-less methods.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.routing import BaseRoute, Match, compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from dumont_plan import __version__
from dumont_plan.server.context import AppState
from dumont_plan.server.envelope import install_error_handlers
from dumont_plan.server.faults import FaultMiddleware, FaultQueue
from dumont_plan.server.limits import RequestGuard
from dumont_plan.server.provider_gate import ProviderGate
from dumont_plan.server.reconciler import Reconciler
from dumont_plan.server.routes import (
    agent,
    auth,
    dashboard,
    endpoints,
    finetune,
    health,
    history,
    instances,
    job_schedules,
    jobs,
    local,
    serverless,
    spot,
    spot_hooks,
    state,
    user_settings,
)
from dumont_plan.server.security import load_or_create_secret
from dumont_plan.server.settings import ServerSettings
from dumont_plan.server.store import Store

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
# Methods some route answers besides those: the state lock of Terraform's HTTP backend
# (routes/state.py). They are counted by name; any other method counts as OTHER.
CUSTOM_METHODS = ["LOCK", "UNLOCK"]
COUNTED_METHODS = frozenset([*ALL_METHODS, *CUSTOM_METHODS])


def v1_routers(settings: ServerSettings) -> list[APIRouter]:
    """The routers of the v1 API, each with its own prefix (`/auth`, `/jobs`, ...)."""
    routers = [
        auth.router,
        job_schedules.router,  # before jobs: /jobs/schedules is not a job id
        jobs.router,
        job_schedules.moves,  # PATCH /jobs/{id}: a waiting job's start_at
        instances.router,
        history.router,
        state.router,
        serverless.router,
        serverless.aliases,
        endpoints.router,
        agent.router,
        spot.router,
        finetune.router,
        user_settings.router,
    ]
    if settings.enable_test_hooks:
        routers.append(local.router)
        routers.append(spot_hooks.router)
    return routers


class RouteTable:
    """Method and path -> the template of the route that answers them, found as the router
    finds it (the first route whose path and method match, else the first whose path does),
    without routing: for a request answered before routing too (an injected fault)."""

    def __init__(self) -> None:
        self.routes: list[tuple[re.Pattern[str], frozenset[str], str]] = []

    def add(self, prefix: str, routes: Iterable[BaseRoute]) -> None:
        for route in routes:
            path = getattr(route, "path", None)
            if isinstance(path, str):
                regex, _, _ = compile_path(prefix + path)
                methods = frozenset(getattr(route, "methods", None) or ())
                self.routes.append((regex, methods, prefix + path))

    def template(self, method: str, path: str) -> str:
        partial = None
        for regex, methods, template in self.routes:
            if regex.match(path):
                if not methods or method in methods:
                    return template
                partial = partial or template
        return partial or "(no route)"


class CountRequests:
    """Counts requests by `METHOD route` (read through the test hooks); plain ASGI, cheap.

    The key is the template of the route that answers (`GET /api/v1/jobs/{job_id}`), not the
    raw path, and a method the API does not know counts as OTHER: the table is bounded by the
    routes, however many ids or junk paths the server sees.
    """

    def __init__(self, app: ASGIApp, counter: Counter[str], routes: RouteTable) -> None:
        self.app = app
        self.counter = counter
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method = scope["method"]
            template = self.routes.template(method, scope["path"])
            self.counter[f"{method if method in COUNTED_METHODS else 'OTHER'} {template}"] += 1
        await self.app(scope, receive, send)


def api_fallback_route(app: FastAPI) -> BaseRoute:
    return next(r for r in app.router.routes if getattr(r, "name", None) == "api_fallback")


class TrustedHosts:
    """Answers 400 to a request whose Host header names another host (DNS rebinding: a web
    page whose name now resolves to 127.0.0.1 must not reach this API). The port is not
    checked: a local relay or proxy may carry the request from another port."""

    def __init__(self, app: ASGIApp, names: list[str]) -> None:
        self.app = app
        self.names = {n.strip("[]").lower() for n in names}

    def allowed(self, host: str) -> bool:
        name = host.lower()
        if name.startswith("["):
            name = name[1:].partition("]")[0]
        elif name.count(":") == 1:
            name = name.partition(":")[0]
        return name in self.names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            host = headers.get(b"host", b"").decode("latin-1")
            if not self.allowed(host):
                message = f"Invalid Host header {host!r}: this server answers only to its own name"
                response = JSONResponse({"error": message}, status_code=400)
                await response(scope, receive, send)
                return
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
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    state = AppState(
        settings=settings,
        store=Store(settings.db_path),
        secret=load_or_create_secret(settings.data_dir),
    )
    if settings.enable_test_hooks and settings.clock_offset > 0:
        state.clock.advance(settings.clock_offset)
    reconciler = Reconciler(state)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if background:
            reconciler.start()
        try:
            yield
        finally:
            reconciler.stop()
            for close in state.closers:
                close()
            state.hash_pool.close()

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
    install_error_handlers(app, exception_text=settings.real_platform)
    routes = RouteTable()
    routes.add("", app.router.routes)  # the OpenAPI schema and docs
    app.include_router(health.router)
    routes.add("", health.router.routes)
    app.include_router(dashboard.router)
    routes.add("", dashboard.router.routes)
    v1 = APIRouter()
    routers = v1_routers(settings)
    for router in routers:
        v1.include_router(router)
    for prefix in ("/api/v1", "/api"):
        for router in routers:
            routes.add(prefix, router.routes)
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

    if settings.provider != "ok":
        app.add_middleware(ProviderGate, state=settings.provider)
    if settings.fault_rate > 0 or settings.enable_test_hooks:
        app.add_middleware(FaultMiddleware, faults=app.state.faults)
    routes.add("", [api_fallback_route(app)])
    app.add_middleware(
        RequestGuard,
        max_body_bytes=settings.max_body_bytes,
        max_state_bytes=settings.max_state_bytes,
        max_stream_bytes=settings.dataset_max_bytes,
        exception_text=settings.real_platform,
    )
    app.add_middleware(CountRequests, counter=app.state.request_counts, routes=routes)
    if settings.trusted_hosts is not None:
        app.add_middleware(TrustedHosts, names=settings.trusted_hosts)
    return app
