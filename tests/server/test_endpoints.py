"""Serverless endpoints (contract §7.3) over loopback, on real sandboxed workers: a tiny
`http.server` written by the test serves `$PORT`; the first request cold-starts it, a burst
scales out to `max_instances` and never beyond, idle workers (on the policy clock, advanced by
the test hook) scale to zero, metrics and cost follow what happened, users are isolated."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from dumont_plan.server.provider.endpoint_pool import WORKER_ID_BASE
from tests.server.instancefixtures import FAST_ENV, fast_server_fixture, sandbox_tag, wait_until
from tests.server.serverlessfixtures import advance, reconcile
from tests.support import LocalServer, UserSession, new_user

ENDPOINTS = "/api/v1/serverless/endpoints"
SERVER_SCRIPT = """
import http.server, os, time, urllib.parse
class Handler(http.server.BaseHTTPRequestHandler):
    def _answer(self, extra):
        url = urllib.parse.urlparse(self.path)
        args = urllib.parse.parse_qs(url.query)
        time.sleep(float(args.get("sleep", ["0"])[0]))
        auth = "auth" if self.headers.get("Authorization") else "noauth"
        body = f"{url.path} {os.environ.get('GREETING', '-')} {auth} {extra}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self._answer("")
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self._answer(self.rfile.read(length).decode())
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""
COMMAND = f"cat > server.py <<'EOF'\n{SERVER_SCRIPT}EOF\nexec python3 server.py"


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    yield from fast_server_fixture(tmp_path_factory)


@pytest.fixture
def owner(fast: LocalServer) -> Iterator[UserSession]:
    session = new_user(fast.url)
    yield session
    with session.http() as http:
        for endpoint in http.get(ENDPOINTS).json()["endpoints"]:
            http.delete(f"{ENDPOINTS}/{endpoint['id']}")


def create(http: httpx.Client, **body: Any) -> dict[str, Any]:
    fields = {"name": "echo", "docker_image": "python:3.11-slim", "command": COMMAND, **body}
    response = http.post(ENDPOINTS, json=fields)
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def get(http: httpx.Client, endpoint_id: str) -> dict[str, Any]:
    response = http.get(f"{ENDPOINTS}/{endpoint_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def worker_processes(server: LocalServer, worker_ids: set[int]) -> list[int]:
    """This machine's pids of the processes of these workers (by their sandbox tag)."""
    tags = {sandbox_tag(WORKER_ID_BASE + w, server) for w in worker_ids}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = set((entry / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if tags & environ:
            found.append(int(entry.name))
    return found


def test_cold_start_burst_scale_to_zero_and_metrics(fast: LocalServer, owner: UserSession) -> None:
    with owner.http() as http:
        endpoint = create(
            http,
            max_instances=2,
            concurrency=1,
            idle_timeout_seconds=30,
            env_vars={"GREETING": "hello"},
        )
        endpoint_id = endpoint["id"]
        assert endpoint["id"].startswith("ep-")
        assert (endpoint["status"], endpoint["auto_scaling"]["current_instances"]) == ("running", 0)
        assert endpoint["url"] == f"{ENDPOINTS}/{endpoint_id}/invoke/"

        first = http.get(f"{ENDPOINTS}/{endpoint_id}/invoke/hi/there")
        assert first.status_code == 200, first.text
        # The workload sees its path and env_vars, never the caller's token.
        assert first.text == "/hi/there hello noauth "
        assert first.headers["x-dumont-cold-start"] == "1"
        second = http.post(f"{ENDPOINTS}/{endpoint_id}/invoke/echo", content=b"payload")
        assert (second.status_code, second.text) == (200, "/echo hello noauth payload")
        assert second.headers["x-dumont-cold-start"] == "0"
        assert second.headers["x-dumont-worker"] == first.headers["x-dumont-worker"]

        # A burst of 5 requests holding 0.4 s each, concurrency 1: scales out to 2, not beyond.
        def call(_: int) -> httpx.Response:
            return http.get(f"{ENDPOINTS}/{endpoint_id}/invoke/slow", params={"sleep": "0.4"})

        with ThreadPoolExecutor(5) as threads:
            burst = list(threads.map(call, range(5)))
        assert [r.status_code for r in burst] == [200] * 5
        workers = {int(r.headers["x-dumont-worker"]) for r in burst}
        assert len(workers) == 2
        body = get(http, endpoint_id)
        assert body["auto_scaling"]["current_instances"] == 2
        assert len(worker_processes(fast, workers)) >= 2

        # Idle past the timeout (policy clock): scales to zero, no process left.
        advance(http, 31)
        body = get(http, endpoint_id)
        assert body["auto_scaling"]["current_instances"] == 0
        assert body["status"] == "running"
        wait_until(lambda: not worker_processes(fast, workers), timeout=10)

        # The next request wakes it: a cold start again.
        again = http.get(f"{ENDPOINTS}/{endpoint_id}/invoke/")
        assert again.status_code == 200, again.text
        assert again.headers["x-dumont-cold-start"] == "1"
        assert int(again.headers["x-dumont-worker"]) not in workers

        metrics = get(http, endpoint_id)["metrics"]
        assert metrics["total_requests_24h"] == 8
        assert metrics["cold_starts_24h"] == 3  # first worker, the burst's second, the wake
        assert 0 < metrics["avg_latency_ms"] <= metrics["p99_latency_ms"]
        assert metrics["p99_latency_ms"] >= 400  # the slow requests
        assert metrics["requests_per_sec"] == pytest.approx(8 / 60, abs=1e-3)
        assert metrics["uptime_percent"] == 100.0
        pricing = get(http, endpoint_id)["pricing"]
        assert pricing["price_per_hour"] > 0
        assert 0 < pricing["running_hours_24h"] < 0.1
        assert pricing["cost_24h"] == pytest.approx(
            pricing["running_hours_24h"] * pricing["price_per_hour"], rel=0.05
        )

        stats = http.get("/api/v1/serverless/stats").json()
        assert stats["total_endpoints"] == 1
        assert stats["total_requests_24h"] == 8
        assert stats["cold_starts_24h"] == 3
        assert stats["active_instances"] == 1
        assert stats["avg_latency_ms"] == pytest.approx(metrics["avg_latency_ms"], rel=1e-3)
        assert stats["total_cost_24h"] > 0

        live = {int(i["id"]) for i in get(http, endpoint_id)["instances"]}
        deleted = http.delete(f"{ENDPOINTS}/{endpoint_id}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json() == {"message": f"Endpoint {endpoint_id} deleted successfully"}
        assert not worker_processes(fast, live | workers)
        assert http.get(f"{ENDPOINTS}/{endpoint_id}").status_code == 404


def test_min_instances_pause_resume_and_delete(fast: LocalServer, owner: UserSession) -> None:
    with owner.http() as http:
        endpoint = create(http, min_instances=1, max_instances=3)
        endpoint_id = endpoint["id"]
        assert endpoint["auto_scaling"]["current_instances"] == 1

        def running() -> bool:
            reconcile(http)
            return bool(get(http, endpoint_id)["status"] == "running")

        wait_until(running, timeout=30)
        # Idle workers never go below min_instances.
        advance(http, 120)
        assert get(http, endpoint_id)["auto_scaling"]["current_instances"] == 1

        paused = http.post(f"{ENDPOINTS}/{endpoint_id}/pause")
        assert paused.json() == {"message": f"Endpoint {endpoint_id} paused", "status": "paused"}
        body = get(http, endpoint_id)
        assert (body["status"], body["auto_scaling"]["current_instances"]) == ("paused", 0)
        refused = http.get(f"{ENDPOINTS}/{endpoint_id}/invoke/")
        assert refused.status_code == 409
        assert "paused" in refused.json()["error"]

        resumed = http.post(f"{ENDPOINTS}/{endpoint_id}/resume")
        assert resumed.status_code == 200
        assert resumed.json()["status"] in ("provisioning", "running")
        assert http.get(f"{ENDPOINTS}/{endpoint_id}/invoke/x").status_code == 200

        updated = http.put(
            f"{ENDPOINTS}/{endpoint_id}", json={"min_instances": 0, "max_instances": 1}
        )
        assert updated.status_code == 200, updated.text
        assert updated.json()["auto_scaling"]["max_instances"] == 1
        workers = {int(i["id"]) for i in updated.json()["instances"]}
        assert workers
        assert http.delete(f"{ENDPOINTS}/{endpoint_id}").status_code == 200
        assert not worker_processes(fast, workers)


def test_a_command_that_does_not_serve_is_a_502_with_its_output(owner: UserSession) -> None:
    with owner.http() as http:
        endpoint = create(http, command="echo cannot-serve-here; exit 3")
        answer = http.get(f"{ENDPOINTS}/{endpoint['id']}/invoke/")
        assert answer.status_code == 502
        assert "cannot-serve-here" in answer.json()["error"]
        no_command = create(http, command=None)
        assert http.get(f"{ENDPOINTS}/{no_command['id']}/invoke/").status_code == 409


def test_another_user_sees_and_invokes_nothing(fast: LocalServer, owner: UserSession) -> None:
    with owner.http() as http:
        endpoint_id = create(http, name="private")["id"]
    other = new_user(fast.url)
    with other.http() as http:
        assert http.get(ENDPOINTS).json() == {"endpoints": []}
        for method, path, body in [
            ("GET", f"{ENDPOINTS}/{endpoint_id}", None),
            ("PUT", f"{ENDPOINTS}/{endpoint_id}", {"min_instances": 1}),
            ("DELETE", f"{ENDPOINTS}/{endpoint_id}", None),
            ("POST", f"{ENDPOINTS}/{endpoint_id}/pause", None),
            ("POST", f"{ENDPOINTS}/{endpoint_id}/resume", None),
            ("GET", f"{ENDPOINTS}/{endpoint_id}/invoke/", None),
            ("POST", f"{ENDPOINTS}/{endpoint_id}/invoke/x", None),
        ]:
            answer = http.request(method, path, json=body)
            assert answer.status_code == 404, (method, path, answer.text)
            assert "private" not in answer.text
        assert http.get("/api/v1/serverless/stats").json()["total_endpoints"] == 0
    with owner.http() as http:
        assert get(http, endpoint_id)["auto_scaling"]["min_instances"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"docker_image": "x"},  # no name
        {"name": "n"},  # no docker_image
        {"name": "n", "docker_image": "x", "min_instances": 3, "max_instances": 2},
        {"name": "n", "docker_image": "x", "max_instances": 51},
        {"name": "n", "docker_image": "x", "concurrency": 0},
        {"name": "n", "docker_image": "x", "idle_timeout_seconds": 0},
        {"name": "n", "docker_image": "x", "env_vars": {"1BAD": "v"}},
        {"name": "n", "docker_image": "x", "env_vars": {"PORT": "1"}},
        {"name": "n", "docker_image": "x", "command": "   "},
        {"name": "   ", "docker_image": "x"},
    ],
)
def test_bad_input_is_422(owner: UserSession, body: dict[str, Any]) -> None:
    with owner.http() as http:
        answer = http.post(ENDPOINTS, json=body)
        assert answer.status_code == 422, answer.text
        assert "error" in answer.json()


def test_bad_update_is_422(owner: UserSession) -> None:
    with owner.http() as http:
        endpoint_id = create(http, command=None)["id"]
        url = f"{ENDPOINTS}/{endpoint_id}"
        assert http.put(url, json={"min_instances": 6}).status_code == 422  # above max 5
        assert http.put(url, json={"max_instances": 0}).status_code == 422
        assert http.put(url, json={"concurrency": 0}).status_code == 422
        assert get(http, endpoint_id)["auto_scaling"]["min_instances"] == 0


def test_the_workload_runs_sandboxed_without_the_control_planes_data(
    fast: LocalServer, owner: UserSession
) -> None:
    secret = fast.data_dir / "jwt-secret"
    assert secret.exists()
    probe = SERVER_SCRIPT.replace(
        "auth = ",
        f"extra = str(os.path.exists({str(secret)!r})) + ' ' + os.getcwd()\n        auth = ",
    ).replace('{auth} {extra}".encode()', '{auth}".encode() + extra.encode()')
    command = f"cat > server.py <<'EOF'\n{probe}EOF\nexec python3 server.py"
    with owner.http() as http:
        endpoint = create(http, command=command)
        answer = http.get(f"{ENDPOINTS}/{endpoint['id']}/invoke/")
        assert answer.status_code == 200, answer.text
        assert answer.text.endswith("False /workspace"), answer.text


def test_a_worker_that_stops_serving_is_replaced_for_the_request(owner: UserSession) -> None:
    # Serves one request, then its process exits: the next request finds the port closed.
    # (the health check's bare connects do not count: only an answered request ends it).
    once = (
        SERVER_SCRIPT.replace(
            "self.wfile.write(body)", "self.wfile.write(body); self.server.done = 1"
        )
        .replace("http.server.ThreadingHTTPServer(", "server = http.server.HTTPServer(")
        .replace(
            ".serve_forever()", "\nwhile not getattr(server, 'done', 0): server.handle_request()"
        )
    )
    command = f"cat > server.py <<'EOF'\n{once}EOF\nexec python3 server.py"
    with owner.http() as http:
        endpoint_id = create(http, command=command, max_instances=1)["id"]
        first = http.get(f"{ENDPOINTS}/{endpoint_id}/invoke/one")
        assert (first.status_code, first.text) == (200, "/one - noauth ")
        second = http.get(f"{ENDPOINTS}/{endpoint_id}/invoke/two")
        assert (second.status_code, second.text) == (200, "/two - noauth ")
        assert second.headers["x-dumont-worker"] != first.headers["x-dumont-worker"]
        assert second.headers["x-dumont-cold-start"] == "1"
        metrics = get(http, endpoint_id)["metrics"]
        assert (metrics["total_requests_24h"], metrics["uptime_percent"]) == (2, 100.0)


def test_stopping_the_control_plane_stops_its_workers(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    server = LocalServer(tmp_path_factory.mktemp("endpoints-stop"), env=FAST_ENV).start()
    workers: set[int] = set()
    try:
        session = new_user(server.url)
        with session.http() as http:
            endpoint_id = create(http, min_instances=1)["id"]
            assert http.get(f"{ENDPOINTS}/{endpoint_id}/invoke/").status_code == 200
            workers |= {int(i["id"]) for i in get(http, endpoint_id)["instances"]}
        assert workers and worker_processes(server, workers)
    finally:
        server.stop(reap=False)  # SIGTERM: the server's shutdown alone must end them
    try:
        wait_until(lambda: not worker_processes(server, workers), timeout=10)
    finally:
        server.reap()
