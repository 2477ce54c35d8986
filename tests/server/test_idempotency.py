"""`Idempotency-Key` on create routes: one create per (user, key), replayed afterwards."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, Request
from fastapi.testclient import TestClient

from dumont_plan.server import app as app_module
from dumont_plan.server.app import create_app
from dumont_plan.server.context import StateDep, UserDep
from dumont_plan.server.idempotency import idempotent_create
from dumont_plan.server.settings import ServerSettings
from tests.support import PASSWORD


class Widgets:
    """A create route on the real app that counts how often it really creates."""

    def __init__(self) -> None:
        self.created = 0
        self.lock = threading.Lock()

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.post("/widgets/", status_code=201)
        def create_widget(request: Request, state: StateDep, user: UserDep) -> Any:
            def make() -> dict[str, Any]:
                time.sleep(0.05)  # a slow create widens the window of a concurrent duplicate
                with self.lock:
                    self.created += 1
                    return {"id": self.created, "owner": user.email}

            return idempotent_create(request, state, user, make)

        @router.post("/gadgets/", status_code=201)
        def create_gadget(request: Request, state: StateDep, user: UserDep) -> Any:
            return idempotent_create(request, state, user, lambda: {"gadget": True})

        return router


@pytest.fixture
def widgets() -> Widgets:
    return Widgets()


@pytest.fixture
def http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, widgets: Widgets) -> Iterator[TestClient]:
    build = app_module.v1_routers

    def with_widgets(settings: ServerSettings) -> list[APIRouter]:
        return [*build(settings), widgets.router()]

    monkeypatch.setattr(app_module, "v1_routers", with_widgets)
    with TestClient(create_app(ServerSettings(data_dir=tmp_path), background=False)) as client:
        yield client


def login(http: TestClient, email: str) -> dict[str, str]:
    answer = http.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def test_a_repeated_key_replays_the_first_answer(http: TestClient, widgets: Widgets) -> None:
    auth = login(http, "a@example.com")
    headers = {**auth, "Idempotency-Key": "k1"}
    first = http.post("/api/v1/widgets/", headers=headers)
    again = http.post("/api/widgets/", headers=headers)  # the compat mount is the same route
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() == {"id": 1, "owner": "a@example.com"}
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert widgets.created == 1
    assert http.post("/api/v1/widgets/", headers=auth).json()["id"] == 2  # no key: creates


def test_keys_belong_to_one_user(http: TestClient, widgets: Widgets) -> None:
    a = http.post(
        "/api/v1/widgets/", headers={**login(http, "a@example.com"), "Idempotency-Key": "k"}
    )
    b = http.post(
        "/api/v1/widgets/", headers={**login(http, "b@example.com"), "Idempotency-Key": "k"}
    )
    assert a.json()["owner"] == "a@example.com"
    assert b.json()["owner"] == "b@example.com"
    assert widgets.created == 2


def test_a_key_reused_for_another_request_is_409(http: TestClient) -> None:
    headers = {**login(http, "a@example.com"), "Idempotency-Key": "k"}
    assert http.post("/api/v1/widgets/", headers=headers).status_code == 201
    answer = http.post("/api/v1/gadgets/", headers=headers)
    assert answer.status_code == 409
    assert answer.json() == {
        "error": "Idempotency-Key 'k' was already used for POST /api/v1/widgets/; "
        "use a new key for a new request"
    }


def test_concurrent_duplicates_create_once(http: TestClient, widgets: Widgets) -> None:
    headers = {**login(http, "a@example.com"), "Idempotency-Key": "race"}
    answers: list[Any] = []

    def post() -> None:
        answers.append(http.post("/api/v1/widgets/", headers=headers).json())

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert widgets.created == 1
    assert answers == [{"id": 1, "owner": "a@example.com"}] * 4
