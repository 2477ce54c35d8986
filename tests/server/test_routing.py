"""Mounts, trailing slashes and the error envelope of the contract (§1.1-§1.3), in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from dumont_plan import __version__
from dumont_plan.server import app as app_module
from dumont_plan.server.app import create_app
from dumont_plan.server.settings import ServerSettings
from tests.support import PASSWORD

METHOD_NOT_ALLOWED = {"error": "Method Not Allowed"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(ServerSettings(data_dir=tmp_path), background=False)
    with TestClient(app, follow_redirects=False) as http:
        yield http


def not_found(path: str) -> dict[str, str]:
    return {"error": f"API endpoint not found: {path}"}


def test_health(client: TestClient) -> None:
    answer = client.get("/health")
    assert answer.status_code == 200
    body = answer.json()
    assert body == {
        "status": "healthy",
        "version": __version__,
        "service": "dumont-local-control-plane",
        "capabilities": body["capabilities"],
        "executor": {"name": "local", "available": True, "reason": None},
    }
    assert "executor.local" in body["capabilities"]
    assert all(isinstance(c, str) for c in body["capabilities"])
    assert {"auth.revocable-logout", "idempotency-key", "per-user-isolation"} <= set(
        body["capabilities"]
    )


def test_compat_mount_is_the_v1_router(client: TestClient) -> None:
    email = "mounts@example.com"
    registered = client.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    assert registered.status_code == 200
    v1 = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    compat = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert v1.status_code == compat.status_code == 200
    assert {**v1.json(), "token": ""} == {**compat.json(), "token": ""}
    auth = {"Authorization": f"Bearer {compat.json()['token']}"}
    assert (
        client.get("/api/auth/me", headers=auth).json()
        == client.get("/api/v1/auth/me", headers=auth).json()
    )


@pytest.mark.parametrize("path", ["/api/v1/auth/me/", "/api/auth/me/", "/api/v1/auth/login/"])
def test_get_with_extra_slash_on_a_slashless_route_is_404(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 404
    assert answer.json() == not_found(path)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_with_extra_slash_are_405(client: TestClient, method: str) -> None:
    answer = client.request(method, "/api/v1/auth/login/")
    assert answer.status_code == 405
    assert answer.json() == METHOD_NOT_ALLOWED


@pytest.mark.parametrize("path", ["/api/v1/nothing", "/api/v1/nothing/", "/api/nothing/here"])
def test_unknown_api_paths(client: TestClient, path: str) -> None:
    assert client.post(path).status_code == 405
    assert client.post(path).json() == METHOD_NOT_ALLOWED
    assert client.delete(path).json() == METHOD_NOT_ALLOWED
    answer = client.get(path)
    assert answer.status_code == 404
    assert answer.json() == not_found(path)


def test_wrong_method_on_a_known_route_is_405(client: TestClient) -> None:
    answer = client.post("/api/v1/auth/me")
    assert answer.status_code == 405
    assert answer.json() == METHOD_NOT_ALLOWED


def test_paths_outside_the_api_use_the_envelope(client: TestClient) -> None:
    answer = client.get("/nothing")
    assert answer.status_code == 404
    assert answer.json() == {"error": "Not Found"}


def test_openapi_is_served_under_v1(client: TestClient) -> None:
    answer = client.get("/api/v1/openapi.json")
    assert answer.status_code == 200
    assert "/api/v1/auth/login" in answer.json()["paths"]


@pytest.fixture
def widgets_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The app with one slash-registered collection (`/widgets/`), like the contract's jobs."""
    build = app_module.v1_routers

    def with_widgets(settings: ServerSettings) -> list[APIRouter]:
        widgets = APIRouter(prefix="/widgets")

        @widgets.get("/")
        def list_widgets() -> dict[str, list[str]]:
            return {"widgets": []}

        @widgets.post("/", status_code=201)
        def create_widget() -> dict[str, str]:
            return {"id": "w1"}

        return [*build(settings), widgets]

    monkeypatch.setattr(app_module, "v1_routers", with_widgets)
    app = create_app(ServerSettings(data_dir=tmp_path), background=False)
    with TestClient(app, follow_redirects=False) as http:
        yield http


@pytest.mark.parametrize("prefix", ["/api/v1", "/api"])
def test_slash_route_redirects_a_slashless_get(widgets_client: TestClient, prefix: str) -> None:
    answer = widgets_client.get(f"{prefix}/widgets", params={"limit": 5})
    assert answer.status_code == 307
    assert answer.headers["location"] == f"{prefix}/widgets/?limit=5"
    assert widgets_client.get(f"{prefix}/widgets/").json() == {"widgets": []}


def test_slash_route_refuses_a_slashless_post(widgets_client: TestClient) -> None:
    answer = widgets_client.post("/api/v1/widgets", json={})
    assert answer.status_code == 405
    assert answer.json() == METHOD_NOT_ALLOWED
    assert widgets_client.post("/api/v1/widgets/", json={}).status_code == 201


def test_jobs_collection_redirects_a_slashless_get(client: TestClient) -> None:
    answer = client.get("/api/v1/jobs", params={"limit": 3})
    assert answer.status_code == 307
    assert answer.headers["location"] == "/api/v1/jobs/?limit=3"
    assert client.post("/api/v1/jobs", json={}).json() == METHOD_NOT_ALLOWED


def test_unhandled_error_is_500_without_internals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = app_module.v1_routers

    def with_broken(settings: ServerSettings) -> list[APIRouter]:
        router = APIRouter()

        @router.get("/broken")
        def broken() -> None:
            raise RuntimeError("secret internals")

        return [*build(settings), router]

    monkeypatch.setattr(app_module, "v1_routers", with_broken)
    app = create_app(ServerSettings(data_dir=tmp_path), background=False)
    with TestClient(app, raise_server_exceptions=False) as http:
        answer = http.get("/api/v1/broken")
    assert answer.status_code == 500
    assert answer.json() == {"error": "Internal server error", "details": "RuntimeError"}
