"""Auth matrix: every route of the local control plane, against every kind of bad credential.

The routes are computed from `create_app(...)`, not listed by hand: a new route is covered (or
this test fails asking for a path parameter value) the day it is added. Only the routes in
PUBLIC answer without a token (contract §2.1).

For every other route under /api/v1 (and its /api compat twin):
- no token, an expired token, a token signed with another secret, a revoked (logged out) token:
  401 `{"error": "Not authenticated"}`;
- user B's valid token on user A's resources: a route addressing A's job or instance answers
  403/404 with nothing but `error`/`details`; no route shows B anything of A's (A's e-mail and
  marker strings never appear) or changes A's resources.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from dumont_plan.server.app import create_app
from dumont_plan.server.security import issue_token
from dumont_plan.server.settings import ServerSettings
from tests.support import PASSWORD, LocalServer, UserSession

V1 = "/api/v1"
NOT_AUTHENTICATED = {"error": "Not authenticated"}

# (method, path under /api/v1) answered without a token: contract §2.1, plus the OpenAPI document.
PUBLIC = {
    ("POST", "/auth/login"),
    ("POST", "/auth/register"),
    ("GET", "/instances/offers"),
    ("GET", "/openapi.json"),
    ("GET", "/serverless/status"),
    ("GET", "/serverless/pricing"),
}
# Public in the contract (§2.1) but not built yet: public once they appear.
PUBLIC_WHEN_BUILT: set[tuple[str, str]] = set()
# Routes of the app outside /api that are public by design.
PUBLIC_OUTSIDE_API = {
    "/health",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    # The spot dashboard: a static page and its files; its data routes are under /api.
    "/dashboard",
    "/dashboard/{asset}",
}
FALLBACK = "/api/{rest}"

# Path parameters that address one of A's own resources: B must get 403/404 and no data.
OWNED_PARAMS = {"job_id", "instance_id", "template_id", "endpoint_id", "schedule_id"}


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # path format, e.g. /api/v1/jobs/{job_id}

    @property
    def params(self) -> list[str]:
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{")]

    def under_v1(self) -> str:
        return self.path.removeprefix(V1)


def app_routes(app: FastAPI) -> list[Route]:
    """Every (method, path format) the app serves, included routers flattened."""
    try:  # FastAPI >= 0.16x keeps included routers nested
        from fastapi.routing import iter_route_contexts

        contexts: list[Any] = list(iter_route_contexts(app.routes))
    except ImportError:  # pragma: no cover - older FastAPI flattens app.routes itself
        contexts = list(app.routes)
    found = set()
    for ctx in contexts:
        path = getattr(ctx, "path_format", None) or getattr(ctx, "path", None)
        for method in getattr(ctx, "methods", None) or ():
            if method != "HEAD" and path:
                found.add(Route(method, path))
    return sorted(found, key=lambda r: (r.path, r.method))


def mount_of(path: str) -> tuple[str, str] | None:
    """(mount, path under it) for /api/v1/... and the /api/... compat twin; None elsewhere."""
    for mount in (V1, "/api"):
        if path.startswith(mount + "/") and path != FALLBACK:
            rest = path.removeprefix(mount)
            if mount == "/api" and rest.startswith("/v1/"):
                return None
            return mount, rest
    return None


def protected_routes(app: FastAPI, prefix: str = V1) -> list[Route]:
    public = PUBLIC | PUBLIC_WHEN_BUILT
    found = []
    for route in app_routes(app):
        mounted = mount_of(route.path)
        if mounted and mounted[0] == prefix and (route.method, mounted[1]) not in public:
            found.append(route)
    return found


@dataclass
class World:
    app: FastAPI
    http: TestClient
    a: dict[str, str]  # A's token, email, resource ids and markers
    b_token: str
    secret: str

    def token_for_a(self, secret: str, ttl: int) -> str:
        """A token of A's account (its id and generation), signed with `secret`."""
        user_id = self.app.state.dumont.store.query_one(
            "SELECT id FROM users WHERE email = ?", (self.a["email"],)
        )["id"]
        return issue_token(secret, self.a["email"], ttl, user_id=user_id, generation=0)

    def fill(self, route: Route) -> str:
        spot = route.path.startswith((f"{V1}/spot/", "/api/spot/"))
        values = {
            "job_id": self.a["finetune_id" if "/finetune/" in route.path else "job_id"],
            # A's spot deployment's instance on the spot routes, A's other instance elsewhere.
            "instance_id": self.a["spot_instance_id" if spot else "instance_id"],
            "machine_id": self.a["machine_id"],
            "template_id": self.a["template_id"],
            "endpoint_id": self.a["endpoint_id"],
            "schedule_id": self.a["schedule_id"],
            "provider": "local",
            "path": "output/result.txt",
            "project": "shared-name",  # A stored a state under it; B's is another one
        }
        missing = [p for p in route.params if p not in values]
        assert not missing, (
            f"{route.method} {route.path}: add a value for path parameter(s) {missing} "
            "to World.fill in tests/adversarial/test_auth_matrix.py"
        )
        return route.path.format(**values)

    def call(self, route: Route, token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.call_with(route, headers)

    def call_with(self, route: Route, headers: dict[str, str]) -> httpx.Response:
        return self.http.request(route.method, self.fill(route), headers=headers)


def _ok(response: httpx.Response, *statuses: int) -> Any:
    assert response.status_code in (statuses or (200,)), response.text
    return response.json()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # No fine-tune trains here (A's stays pending): the matrix is about the routes.
    settings = ServerSettings(
        data_dir=tmp_path_factory.mktemp("auth-matrix"), max_running_finetunes=0
    )
    app = create_app(settings, background=False)
    with TestClient(app) as http:
        marker = uuid.uuid4().hex[:12]
        email_a = f"alice-{marker}@example.com"
        a_token = _ok(
            http.post(f"{V1}/auth/register", json={"email": email_a, "password": PASSWORD})
        )["token"]
        b_token = _ok(
            http.post(
                f"{V1}/auth/register",
                json={"email": f"bob-{uuid.uuid4().hex[:12]}@example.com", "password": PASSWORD},
            )
        )["token"]
        auth = {"Authorization": f"Bearer {a_token}"}
        job = _ok(
            http.post(
                f"{V1}/jobs/",
                json={"name": f"job-{marker}", "command": "true", "timeout_minutes": 10},
                headers=auth,
            ),
            201,
        )
        offer = _ok(http.get(f"{V1}/instances/offers", params={"limit": 1}))["offers"][0]
        instance = _ok(
            http.post(
                f"{V1}/instances",
                json={"offer_id": offer["id"], "label": f"label-{marker}"},
                headers=auth,
            ),
            201,
        )
        _ok(
            http.post(
                f"{V1}/serverless/enable/{instance['id']}",
                json={
                    "mode": "economic",
                    "idle_timeout_seconds": 3600,
                    "webhook_url": f"http://127.0.0.1:9/hook-{marker}",
                    "webhook_secret": f"secret-{marker}",
                },
                headers=auth,
            )
        )
        dataset = _ok(
            http.post(
                f"{V1}/finetune/jobs/upload-dataset",
                files={"file": (f"data-{marker}.jsonl", b'{"text": "hello"}\n')},
                headers=auth,
            )
        )
        finetune = _ok(
            http.post(
                f"{V1}/finetune/jobs",
                json={
                    "name": f"ft-{marker}",
                    "base_model": "unsloth/tinyllama-bnb-4bit",
                    "dataset_source": "upload",
                    "dataset_path": dataset["dataset_path"],
                },
                headers=auth,
            ),
            201,
        )
        machine_id = str(offer["machine_id"])
        _ok(
            http.post(
                f"{V1}/machines/history/blacklist",
                json={"provider": "local", "machine_id": machine_id, "reason": f"reason-{marker}"},
                headers=auth,
            )
        )
        stored = http.post(
            f"{V1}/state/shared-name",
            json={"serial": 1, "lineage": "a", "note": f"state-{marker}"},
            headers=auth,
        )
        assert stored.status_code == 200, stored.text
        # A's spot template of that instance, and a spot deployment from it.
        template = _ok(http.post(f"{V1}/spot/template/{instance['id']}", json={}, headers=auth))
        spot = _ok(
            http.post(
                f"{V1}/spot/deploy",
                json={"template_id": template["template_id"], "max_price": 10},
                headers=auth,
            )
        )
        # A's serverless endpoint (no command: nothing runs in this in-process app).
        endpoint = _ok(
            http.post(
                f"{V1}/serverless/endpoints",
                json={"name": f"ep-{marker}", "docker_image": f"image-{marker}"},
                headers=auth,
            )
        )
        # A's cron schedule of a job.
        schedule = _ok(
            http.post(
                f"{V1}/jobs/schedules",
                json={"cron": "0 3 * * *", "job": {"name": f"sch-{marker}", "command": "true"}},
                headers=auth,
            ),
            201,
        )
        a = {
            "token": a_token,
            "email": email_a,
            "marker": marker,
            "job_id": job["id"],
            "finetune_id": finetune["id"],
            "dataset_path": dataset["dataset_path"],
            "instance_id": str(instance["id"]),
            "machine_id": machine_id,
            "template_id": template["template_id"],
            "spot_instance_id": str(spot["instance_id"]),
            "endpoint_id": endpoint["id"],
            "schedule_id": schedule["id"],
        }
        yield World(app, http, a, b_token, app.state.dumont.secret)
        http.delete(f"{V1}/spot/instance/{spot['instance_id']}", headers=auth)
        http.delete(f"{V1}/instances/{instance['id']}", headers=auth)


def test_route_list_is_computed_and_public_allowlist_is_current(world: World) -> None:
    routes = app_routes(world.app)
    v1 = {(r.method, r.under_v1()) for r in routes if r.path.startswith(V1 + "/")}
    assert not PUBLIC - v1, f"public routes that no longer exist: {PUBLIC - v1}"
    # The matrix really covers the API: jobs, instances, history and auth are all in it.
    protected = {r.under_v1() for r in protected_routes(world.app)}
    for expected in (
        "/jobs/{job_id}",
        "/instances/{instance_id}",
        "/auth/me",
        "/machines/history/summary",
    ):
        assert expected in protected
    outside = {r.path for r in routes if not r.path.startswith("/api/")}
    assert outside <= PUBLIC_OUTSIDE_API, (
        f"unexpected routes outside /api: {outside - PUBLIC_OUTSIDE_API}"
    )


def test_public_routes_answer_without_a_token(world: World) -> None:
    for method, path in sorted(PUBLIC):
        if method != "GET":
            continue
        response = world.http.get(V1 + path)
        assert response.status_code == 200, (path, response.text)
    assert world.http.get("/health").status_code == 200


@pytest.mark.parametrize("prefix", [V1, "/api"])
def test_no_token_is_401_on_every_protected_route(world: World, prefix: str) -> None:
    routes = protected_routes(world.app, prefix)
    assert len(routes) >= 20, routes
    failures = []
    for route in routes:
        response = world.call(route, None)
        if response.status_code != 401 or response.json() != NOT_AUTHENTICATED:
            failures.append(f"{route.method} {route.path}: {response.status_code} {response.text}")
        elif response.headers.get("www-authenticate") != "Bearer":
            failures.append(f"{route.method} {route.path}: no WWW-Authenticate: Bearer")
    assert not failures, "\n".join(failures)


def _revoked_token(world: World) -> str:
    token = _ok(
        world.http.post(f"{V1}/auth/login", json={"email": world.a["email"], "password": PASSWORD})
    )["token"]
    _ok(world.http.post(f"{V1}/auth/logout", headers={"Authorization": f"Bearer {token}"}))
    return str(token)


@pytest.mark.parametrize(
    "kind", ["expired", "wrong secret", "revoked", "malformed", "basic scheme", "empty bearer"]
)
def test_bad_tokens_are_401_on_every_protected_route(world: World, kind: str) -> None:
    authorization = {
        "expired": lambda: f"Bearer {world.token_for_a(world.secret, -60)}",
        "wrong secret": lambda: f"Bearer {world.token_for_a('x' * 48, 3600)}",
        "revoked": lambda: f"Bearer {_revoked_token(world)}",
        "malformed": lambda: "Bearer not.a.jwt",
        "basic scheme": lambda: f"Basic {world.a['token']}",
        "empty bearer": lambda: "Bearer ",
    }[kind]()
    failures = []
    for route in protected_routes(world.app):
        response = world.call_with(route, {"Authorization": authorization})
        if response.status_code != 401 or response.json() != NOT_AUTHENTICATED:
            failures.append(f"{route.method} {route.path}: {response.status_code} {response.text}")
    assert not failures, "\n".join(failures)
    # A's own valid token still works: the failures above are about the token, not the route.
    me = world.http.get(f"{V1}/auth/me", headers={"Authorization": f"Bearer {world.a['token']}"})
    assert me.status_code == 200


def test_another_users_token_sees_and_changes_nothing_of_a(world: World) -> None:
    secrets_of_a = [
        world.a["email"],
        world.a["marker"],
        world.a["job_id"],
        world.a["template_id"],
        world.a["spot_instance_id"],
        world.a["finetune_id"],
        world.a["dataset_path"],
        world.a["endpoint_id"],
        world.a["schedule_id"],
    ]
    failures = []
    for route in protected_routes(world.app):
        if route.under_v1() in ("/auth/logout", "/auth/logout-all"):
            continue  # would revoke B's own token; covered by test_bad_tokens (revoked)
        response = world.call(route, world.b_token)
        where = f"{route.method} {route.path}: {response.status_code} {response.text[:300]}"
        if response.status_code >= 500:
            failures.append(f"server error: {where}")
            continue
        if OWNED_PARAMS & set(route.params):
            if response.status_code not in (403, 404):
                failures.append(f"expected 403/404: {where}")
            elif set(response.json()) - {"error", "details"}:
                failures.append(f"data beyond error/details: {where}")
        # An id B itself sent may be echoed back ("Job job_x not found"); nothing else may.
        leaked = [s for s in secrets_of_a if s in response.text and s not in world.fill(route)]
        if leaked:
            failures.append(f"shows A's {leaked}: {where}")
    assert not failures, "\n".join(failures)

    # Nothing of A's changed: job, instance and blacklist entry are all still there.
    auth = {"Authorization": f"Bearer {world.a['token']}"}
    job = _ok(world.http.get(f"{V1}/jobs/{world.a['job_id']}", headers=auth))
    assert job["status"] != "cancelled"
    instance = _ok(world.http.get(f"{V1}/instances/{world.a['instance_id']}", headers=auth))
    assert instance["label"] == f"label-{world.a['marker']}"
    entries = _ok(world.http.get(f"{V1}/machines/history/blacklist", headers=auth))
    assert [e["reason"] for e in entries] == [f"reason-{world.a['marker']}"]
    state = _ok(world.http.get(f"{V1}/state/shared-name", headers=auth))
    assert state["note"] == f"state-{world.a['marker']}"
    policy = _ok(world.http.get(f"{V1}/serverless/status/{world.a['instance_id']}", headers=auth))
    assert (policy["mode"], policy["is_paused"]) == ("economic", False)
    assert policy["idle_timeout_seconds"] == 3600
    templates = _ok(world.http.get(f"{V1}/spot/templates", headers=auth))
    assert [t["template_id"] for t in templates] == [world.a["template_id"]]
    spot = _ok(world.http.get(f"{V1}/spot/status/{world.a['spot_instance_id']}", headers=auth))
    assert (spot["state"], spot["failover_count"]) == ("active", 0)
    finetune = _ok(world.http.get(f"{V1}/finetune/jobs/{world.a['finetune_id']}", headers=auth))
    assert finetune["status"] == "pending"
    endpoint = _ok(
        world.http.get(f"{V1}/serverless/endpoints/{world.a['endpoint_id']}", headers=auth)
    )
    assert (endpoint["status"], endpoint["name"]) == ("running", f"ep-{world.a['marker']}")
    schedule = _ok(world.http.get(f"{V1}/jobs/schedules/{world.a['schedule_id']}", headers=auth))
    assert (schedule["paused"], schedule["name"]) == (False, f"sch-{world.a['marker']}")


# ------------------------------------------------------------------------------ over loopback


def _server_secret(server: LocalServer) -> str:
    return (Path(server.data_dir) / "jwt-secret").read_text(encoding="utf-8").strip()


def test_over_loopback_no_expired_and_foreign_tokens(
    server: LocalServer, user: UserSession, make_user: Any
) -> None:
    with user.http() as http_a:
        job = http_a.post(
            "/api/v1/jobs/", json={"name": "mine", "command": "true", "timeout_minutes": 10}
        )
        assert job.status_code == 201, job.text
        job_id = job.json()["id"]
    mine = jwt.decode(user.token, options={"verify_signature": False})
    expired = issue_token(
        _server_secret(server), user.email, -60, user_id=mine["uid"], generation=mine["gen"]
    )
    other: UserSession = make_user()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for method, path in [
            ("GET", "/api/v1/jobs/"),
            ("GET", f"/api/v1/jobs/{job_id}"),
            ("POST", f"/api/v1/jobs/{job_id}/cancel"),
            ("GET", "/api/v1/instances"),
            ("GET", "/api/v1/machines/history/blacklist"),
            ("GET", "/api/v1/auth/me"),
        ]:
            for headers in ({}, {"Authorization": f"Bearer {expired}"}):
                response = http.request(method, path, headers=headers)
                assert (response.status_code, response.json()) == (401, NOT_AUTHENTICATED), (
                    method,
                    path,
                    headers,
                )
        for method, path in [
            ("GET", f"/api/v1/jobs/{job_id}"),
            ("GET", f"/api/v1/jobs/{job_id}/logs"),
            ("POST", f"/api/v1/jobs/{job_id}/cancel"),
        ]:
            response = http.request(
                method, path, headers={"Authorization": f"Bearer {other.token}"}
            )
            assert response.status_code in (403, 404), (method, path, response.text)
            assert set(response.json()) <= {"error", "details"}
        listed = http.get("/api/v1/jobs/", headers={"Authorization": f"Bearer {other.token}"})
        assert job_id not in listed.text
