"""The simulated GPU provider's state as the real server reports it (`ServerSettings.provider`).

The real Dumont server reads its provider key per request (contract §1.6, §14): without one it
answers offers with 503 `Vast.ai API key not configured on server.` and instances and jobs with
400 `Vast.ai API key not configured. Please update settings.`; a provider it cannot reach makes
instance calls 503. With `provider` set to "no-key" or "unreachable" this control plane answers
the same bodies, so that the client's handling of them runs in tests. A user who set a key
(`PUT /settings`) gets past the 400s, as with the real server.
"""

from __future__ import annotations

from fastapi import HTTPException, Request, Response
from fastapi.responses import JSONResponse
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.types import ASGIApp

from dumont_plan.server.context import current_user, get_state
from dumont_plan.server.routes.user_settings import KEY_SET

NO_KEY_ON_SERVER = "Vast.ai API key not configured on server."
NO_KEY = "Vast.ai API key not configured. Please update settings."
UNREACHABLE = "provider unreachable"


def provider_answer(state: str, path: str) -> tuple[int, str] | None:
    """The (status, error) the real server gives `path` with its provider in `state`, if any."""
    rest = path.removeprefix("/api/v1").removeprefix("/api")
    if rest == path:  # not an API path
        return None
    offers = rest.startswith("/instances/offers")
    instances = rest == "/instances" or rest.startswith("/instances/")
    jobs = rest == "/jobs" or rest.startswith("/jobs/")
    if state == "no-key":
        if offers:
            return 503, NO_KEY_ON_SERVER
        if instances or jobs:
            return 400, NO_KEY
    if state == "unreachable" and instances:
        return 503, UNREACHABLE
    return None


def user_has_key(request: Request) -> bool:
    """Whether the request's user set a provider key (`PUT /settings`); False unauthenticated
    (the route then answers its own 401)."""
    try:
        user = current_user(request, get_state(request))
    except HTTPException:
        return False
    return bool(user.settings.get(KEY_SET))


class ProviderGate(BaseHTTPMiddleware):
    def __init__(self, app: ASGIApp, state: str) -> None:
        super().__init__(app)
        self.state = state

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        answer = provider_answer(self.state, request.url.path)
        if answer is None or (answer[0] == 400 and user_has_key(request)):
            return await call_next(request)
        status, message = answer
        return JSONResponse({"error": message}, status_code=status)
