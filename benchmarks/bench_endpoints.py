"""Serverless endpoints: the proxy's overhead per request, and a cold start from zero.

One server with test hooks; an endpoint (min 0, max 1, concurrency 4) whose workload is a
tiny `http.server` on `$PORT` (the tests' script). Proxy overhead: REQUESTS sequential GETs
through `GET /serverless/endpoints/{id}/invoke/` interleaved with the same GETs straight to
the worker's loopback port (the baseline: what no proxy can beat) and with `GET /auth/me` (an
authenticated API call, the floor of any request through the control plane), p50 and p99 of
each, client-timed. Cold start: COLD times, the policy clock is advanced past the idle timeout and a
reconciler pass scales the endpoint to zero (no sleeping), then one invoke is timed from the
request to the answer: a sandboxed worker is launched, health-checked (TCP connect on its
port) and then called.
"""

from __future__ import annotations

import time

import httpx

from benchmarks.common import (
    Options,
    Row,
    benchmark,
    local_server,
    percentile,
    register_user,
    scratch_dir,
)
from tests.server.test_endpoints import COMMAND

ENDPOINTS = "/api/v1/serverless/endpoints"


def _timed(http: httpx.Client, url: str) -> float:
    start = time.perf_counter()
    response = http.get(url)
    elapsed = (time.perf_counter() - start) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:200]}")
    return elapsed


def _scale_to_zero(http: httpx.Client, endpoint_id: str) -> None:
    http.post("/api/v1/_local/clock", json={"advance_seconds": 31})
    http.post("/api/v1/_local/reconcile")
    body = http.get(f"{ENDPOINTS}/{endpoint_id}").json()
    if body["auto_scaling"]["current_instances"] != 0:
        raise RuntimeError(f"endpoint did not scale to zero: {body['auto_scaling']}")


@benchmark("endpoints")
def endpoints(opts: Options) -> list[Row]:
    requests = 60 if opts.quick else 300
    colds = 5 if opts.quick else 20
    with (
        scratch_dir(opts, "endpoints") as tmp,
        local_server(tmp / "server", "--test-hooks") as server,
    ):
        token = register_user(server.url, "endpoints-bench@example.com")
        headers = {"Authorization": f"Bearer {token}"}
        with (
            httpx.Client(base_url=server.url, headers=headers, timeout=120) as http,
            httpx.Client(timeout=60) as direct,
        ):
            body = {
                "name": "bench",
                "docker_image": "python:3.11-slim",
                "command": COMMAND,
                "max_instances": 1,
                "concurrency": 4,
                "idle_timeout_seconds": 30,
            }
            created = http.post(ENDPOINTS, json=body)
            if created.status_code != 200:
                raise RuntimeError(f"create: {created.text}")
            endpoint_id = created.json()["id"]
            invoke = f"{ENDPOINTS}/{endpoint_id}/invoke/"
            cold_ms = []
            for _ in range(colds):
                cold_ms.append(_timed(http, invoke))
                _scale_to_zero(http, endpoint_id)
            _timed(http, invoke)  # warm again
            (worker,) = http.get(f"{ENDPOINTS}/{endpoint_id}").json()["instances"]
            straight = f"http://127.0.0.1:{worker['port']}/"
            proxied_ms, direct_ms, api_ms = [], [], []
            for _ in range(requests):
                proxied_ms.append(_timed(http, invoke))
                direct_ms.append(_timed(direct, straight))
                api_ms.append(_timed(http, "/api/v1/auth/me"))
            http.delete(f"{ENDPOINTS}/{endpoint_id}")
    rows = []
    for pct in (50, 99):
        rows.append(
            Row.ratio_row(
                f"endpoints: invoke through the proxy p{pct}",
                percentile(proxied_ms, pct),
                percentile(direct_ms, pct),
                "ms",
                "the worker called directly",
                note=f"{requests} sequential GETs each way, interleaved; overhead at p{pct}: "
                f"{percentile(proxied_ms, pct) - percentile(direct_ms, pct):.1f} ms; an "
                f"authenticated API call (GET /auth/me) alone: {percentile(api_ms, pct):.1f} ms",
            )
        )
    rows.append(
        Row(
            "endpoints: cold start from zero p50",
            percentile(cold_ms, 50),
            "ms",
            note=f"{colds} first requests after a scale to zero (launch in bubblewrap, python "
            "start, health check, the call)",
        )
    )
    rows.append(
        Row(
            "endpoints: cold start from zero p95",
            percentile(cold_ms, 95),
            "ms",
            target="< 5000 ms",
            ok=percentile(cold_ms, 95) < 5000,
        )
    )
    return rows
