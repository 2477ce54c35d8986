"""The request counter behind `GET /api/v1/_local/stats`: keyed by route template, bounded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dumont_plan.server.app import create_app
from dumont_plan.server.settings import ServerSettings
from tests.support import PASSWORD


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = ServerSettings(data_dir=tmp_path, enable_test_hooks=True)
    with TestClient(create_app(settings, background=False), follow_redirects=False) as http:
        yield http


def counts(client: TestClient) -> dict[str, int]:
    requests: dict[str, int] = client.get("/api/v1/_local/stats").json()["requests"]
    return requests


@pytest.mark.slow
def test_ids_and_junk_paths_do_not_grow_the_table(client: TestClient) -> None:
    token = client.post(
        "/api/v1/auth/register", json={"email": "count@example.com", "password": PASSWORD}
    ).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    for i in range(300):
        assert client.get(f"/api/v1/jobs/job_{i:04x}", headers=auth).status_code == 404
        assert client.get(f"/api/v1/junk-{i}").status_code == 404
        assert client.get(f"/elsewhere-{i}").status_code == 404
        assert client.request(f"BREW{i}", "/api/v1/jobs/").status_code == 405
    seen = counts(client)
    assert seen["GET /api/v1/jobs/{job_id}"] == 300
    assert seen["GET /api/{rest:path}"] == 300
    assert seen["GET (no route)"] == 300
    assert seen["OTHER /api/v1/jobs/"] == 300
    assert seen["POST /api/v1/auth/register"] == 1
    assert len(seen) <= 8, sorted(seen)


def test_an_injected_fault_counts_under_the_route_it_answered(client: TestClient) -> None:
    fault = {"count": 1, "status": 503, "method": "GET", "path": "/api/v1/instances/offers"}
    assert client.post("/api/v1/_local/faults", json=fault).status_code == 200
    assert client.get("/api/v1/instances/offers").status_code == 503
    assert counts(client)["GET /api/v1/instances/offers"] == 1


def test_the_state_locks_custom_methods_count_by_name(client: TestClient) -> None:
    token = client.post(
        "/api/v1/auth/register", json={"email": "locks@example.com", "password": PASSWORD}
    ).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    info = {"ID": "L1", "Operation": "dumont apply", "Who": "ana@laptop"}
    assert client.request("LOCK", "/api/v1/state/p", json=info, headers=auth).status_code == 200
    assert client.request("UNLOCK", "/api/v1/state/p", json=info, headers=auth).status_code == 200
    assert client.request("LOCK", "/api/v1/jobs/", headers=auth).status_code == 405
    seen = counts(client)
    assert seen["LOCK /api/v1/state/{project}"] == 1
    assert seen["UNLOCK /api/v1/state/{project}"] == 1
    assert seen["LOCK /api/v1/jobs/"] == 1  # a known method, counted by name even where refused
