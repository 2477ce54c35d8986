"""Every error status of the contract maps to its exception class (real app, in-process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from dumont_plan.client import DumontClient, RetryPolicy
from dumont_plan.client.base import Transport, error_message
from dumont_plan.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    DumontError,
    MethodNotAllowedError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    ServiceUnavailableError,
    UnprocessableError,
)
from dumont_plan.server.app import create_app
from dumont_plan.server.settings import ServerSettings
from tests.support import PASSWORD

EMAIL = "errors@example.com"


class Harness:
    """The real app behind a TestClient (an httpx.Client), with its fault-injection queue."""

    def __init__(self, http: TestClient) -> None:
        self.http = http
        self.token = http.post(
            "/api/v1/auth/register", json={"email": EMAIL, "password": PASSWORD}
        ).json()["token"]
        self.client = DumontClient(http, self.token, retry=RetryPolicy(attempts=1))
        self.anonymous = DumontClient(http, retry=RetryPolicy(attempts=1))

    def inject(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        body = {"count": count, "status": status, "retry_after": retry_after}
        assert self.http.post("/api/v1/_local/faults", json=body).status_code == 200


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    settings = ServerSettings(data_dir=tmp_path, enable_test_hooks=True)
    with TestClient(create_app(settings, background=False)) as http:
        yield Harness(http)


def real_route(status: int) -> Callable[[Harness], Any]:
    """A call that makes the server itself answer `status`."""
    calls: dict[int, Callable[[Harness], Any]] = {
        400: lambda h: h.anonymous.auth.register(EMAIL, PASSWORD),  # already exists
        401: lambda h: h.anonymous.auth.me(),
        404: lambda h: h.client.transport.request("GET", "/api/v1/no-such-thing"),
        405: lambda h: h.client.transport.request("POST", "/api/v1/no-such-thing"),
        422: lambda h: h.anonymous.auth.register("not-an-email", PASSWORD),
    }
    return calls[status]


def injected(status: int) -> Callable[[Harness], Any]:
    def call(h: Harness) -> Any:
        h.inject(status)
        return h.client.auth.me()

    return call


CASES = [
    (400, BadRequestError, real_route(400), "User errors@example.com already exists"),
    (401, AuthenticationError, real_route(401), "Not authenticated"),
    (402, PaymentRequiredError, injected(402), "Injected fault"),
    (403, PermissionDeniedError, injected(403), "Injected fault"),
    (404, NotFoundError, real_route(404), "API endpoint not found: /api/v1/no-such-thing"),
    (405, MethodNotAllowedError, real_route(405), "Method Not Allowed"),
    (409, ConflictError, injected(409), "Injected fault"),
    (422, UnprocessableError, real_route(422), "Validation error"),
    (429, RateLimitedError, injected(429), "Too many requests"),
    (500, ServerError, injected(500), "Internal server error"),
    (502, ServiceUnavailableError, injected(502), "Injected fault"),
    (503, ServiceUnavailableError, injected(503), "Service unavailable"),
    (504, ServiceUnavailableError, injected(504), "Injected fault"),
]


@pytest.mark.parametrize(
    ("status", "cls", "call", "message"), CASES, ids=[str(c[0]) for c in CASES]
)
def test_status_maps_to_its_exception(
    harness: Harness,
    status: int,
    cls: type[ApiError],
    call: Callable[[Harness], Any],
    message: str,
) -> None:
    with pytest.raises(ApiError) as caught:
        call(harness)
    exc = caught.value
    assert type(exc) is cls
    assert isinstance(exc, DumontError)
    assert exc.status_code == status
    assert exc.message.startswith(f"{exc.method} {exc.path} failed ({status}): {message}")
    assert isinstance(exc.body, dict) and exc.body["error"] == message
    assert harness.token not in str(exc)


def test_unlisted_statuses_fall_back_to_the_family(harness: Harness) -> None:
    for status, cls in ((418, ApiError), (507, ServerError)):
        harness.inject(status)
        with pytest.raises(ApiError) as caught:
            harness.client.auth.me()
        assert type(caught.value) is cls
        assert caught.value.status_code == status


def test_401_tells_how_to_log_in_again(harness: Harness) -> None:
    with pytest.raises(AuthenticationError) as caught:
        harness.anonymous.auth.me()
    assert str(caught.value) == (
        "GET /api/v1/auth/me failed (401): Not authenticated; "
        "log in again (`dumont auth login <email> <password>`)"
    )


def test_422_names_the_fields_and_keeps_the_details(harness: Harness) -> None:
    with pytest.raises(UnprocessableError) as caught:
        harness.anonymous.auth.register("not-an-email", "pw-x1")
    exc = caught.value
    assert exc.message == (
        "POST /api/v1/auth/register failed (422): Validation error: "
        "email: Value error, value is not a valid email address; "
        "password: String should have at least 8 characters"
    )
    assert [d["loc"] for d in exc.details] == [["body", "email"], ["body", "password"]]
    assert "pw-x1" not in str(exc.body)  # the password value is never echoed


def response(status: int, **kwargs: Any) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("GET", "http://x/api/v1/t"), **kwargs)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": "from error", "detail": "from detail"}, "from error"),
        ({"detail": "from detail"}, "from detail"),
        ({"detail": [{"msg": "field required"}]}, "[{'msg': 'field required'}]"),
        ({"message": "from message"}, "from message"),
        ({}, "HTTP 409"),
    ],
)
def test_message_comes_from_error_then_detail(body: dict[str, Any], message: str) -> None:
    assert error_message(body, "HTTP 409") == message
    exc = Transport._error(response(409, json=body), "GET", "/api/v1/t")
    assert type(exc) is ConflictError
    assert exc.message == f"GET /api/v1/t failed (409): {message}"


def test_a_non_json_error_body_is_shown_shortened() -> None:
    exc = Transport._error(response(502, text="<html>Bad gateway</html>" * 50), "GET", "/x")
    assert type(exc) is ServiceUnavailableError
    assert exc.message.startswith("GET /x failed (502): <html>Bad gateway</html>")
    assert len(exc.message) < 400
