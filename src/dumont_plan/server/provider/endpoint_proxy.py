"""The request path of a serverless endpoint: a slot on a ready worker, then the proxied call.

A request takes a free slot (fewer than `concurrency` requests in flight) on a ready worker.
When there is none and the endpoint's workers (starting or ready) cannot absorb the requests
waiting, one more worker starts, up to `max_instances`; never beyond. The request then waits
for a slot (polling: workers are health-checked between polls), at most `WAIT_SECONDS`. A
request served by a worker that became ready after it arrived was a cold start.

The caller's `Authorization` header and cookies never reach the workload.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass

import httpx

from dumont_plan.errors import ServerlessError
from dumont_plan.server.context import AppState
from dumont_plan.server.provider import endpoint_pool as pool
from dumont_plan.server.provider.endpoints import record_request

WAIT_SECONDS = 120.0
POLL_SECONDS = 0.02
PROXY_TIMEOUT_SECONDS = 300.0
HOP_BY_HOP = {
    "authorization",
    "connection",
    "content-length",
    "cookie",
    "host",
    "keep-alive",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
DROPPED_ANSWER_HEADERS = HOP_BY_HOP | {"content-encoding", "set-cookie"}


@dataclass(frozen=True)
class Slot:
    worker_id: int
    port: int
    cold: bool


@dataclass(frozen=True)
class Answer:
    status: int
    content: bytes
    headers: dict[str, str]


def _take(state: AppState, endpoint: sqlite3.Row, arrived: float) -> Slot | None:
    """A free slot now (under the pool's guard), or None; starts a worker when needed."""
    p = pool.pool_of(state)
    endpoint_id = str(endpoint["id"])
    concurrency = int(endpoint["concurrency"])
    with p.guard:
        live = [w for w in pool.live_workers(state, endpoint_id) if int(w["id"]) not in p.stopping]
        ready = [w for w in live if w["status"] == "ready"]
        free = [w for w in ready if p.inflight.get(int(w["id"]), 0) < concurrency]
        if free:
            chosen = min(free, key=lambda w: (p.inflight.get(int(w["id"]), 0), int(w["id"])))
            p.inflight[int(chosen["id"])] = p.inflight.get(int(chosen["id"]), 0) + 1
            cold = float(chosen["ready_at"] or 0) >= arrived
            return Slot(int(chosen["id"]), int(chosen["port"]), cold)
        starting = len(live) - len(ready)
        if len(live) < int(endpoint["max_instances"]) and (
            p.waiting.get(endpoint_id, 0) > starting * concurrency
        ):
            pool.start_worker(state, endpoint)
    return None


async def acquire(state: AppState, endpoint: sqlite3.Row) -> Slot:
    """Wait for a slot on one of the endpoint's workers (starting one if needed)."""
    if not endpoint["command"]:
        raise ServerlessError(
            409,
            f"Endpoint {endpoint['id']} has no command: the local control plane runs the "
            "endpoint's `command` (serving HTTP on $PORT); set it with PUT",
        )
    p = pool.pool_of(state)
    endpoint_id = str(endpoint["id"])
    arrived = time.time()
    deadline = time.monotonic() + WAIT_SECONDS
    with p.guard:
        p.waiting[endpoint_id] = p.waiting.get(endpoint_id, 0) + 1
    try:
        while True:
            slot = _take(state, endpoint, arrived)
            if slot is not None:
                return slot
            for worker in pool.live_workers(state, endpoint_id):
                if worker["status"] == "starting":
                    pool.check_worker(state, int(worker["id"]))
            _raise_if_failing(state, endpoint_id, arrived)
            if time.monotonic() > deadline:
                raise ServerlessError(503, f"Endpoint {endpoint_id}: no worker became free")
            await asyncio.sleep(POLL_SECONDS)
    finally:
        with p.guard:
            p.waiting[endpoint_id] = max(0, p.waiting.get(endpoint_id, 0) - 1)


def _raise_if_failing(state: AppState, endpoint_id: str, arrived: float) -> None:
    """With no live worker left and one that failed since the request arrived: a 502 with
    the end of its log (a command that does not serve would otherwise be restarted forever)."""
    if pool.live_workers(state, endpoint_id):
        return
    failed = state.store.query_one(
        "SELECT error FROM endpoint_workers WHERE endpoint_id = ? AND status = 'failed' "
        "AND started_at >= ? ORDER BY id DESC LIMIT 1",
        (endpoint_id, arrived),
    )
    if failed is not None:
        raise ServerlessError(
            502,
            f"Endpoint {endpoint_id}: its command exited before serving on $PORT: "
            f"{failed['error'] or 'no output'}",
        )


_clients: dict[int, httpx.AsyncClient] = {}


def _client() -> httpx.AsyncClient:
    """One client per event loop, kept: making one loads a CA bundle (tens of ms a request).
    Never a proxy from the environment: workers are on loopback."""
    loop = id(asyncio.get_running_loop())
    found = _clients.get(loop)
    if found is None or found.is_closed:
        found = httpx.AsyncClient(timeout=PROXY_TIMEOUT_SECONDS, trust_env=False)
        _clients[loop] = found
    return found


async def forward(
    port: int, method: str, path: str, query: str, headers: dict[str, str], body: bytes
) -> Answer:
    url = f"http://{pool.LOCALHOST}:{port}/{path}" + (f"?{query}" if query else "")
    sent = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
    response = await _client().request(method, url, headers=sent, content=body)
    kept = {k: v for k, v in response.headers.items() if k.lower() not in DROPPED_ANSWER_HEADERS}
    return Answer(response.status_code, response.content, kept)


async def invoke(
    state: AppState,
    endpoint: sqlite3.Row,
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
) -> Answer:
    """Proxy one request to the endpoint; record its latency (the wait for a worker included).

    A worker that refuses the connection (its server stopped listening: nothing was sent) is
    stopped as failed and the request goes to another worker (started if needed), once."""
    started = time.monotonic()
    cold = False
    for attempt in range(2):
        slot = await acquire(state, endpoint)
        cold = cold or slot.cold
        try:
            answer = await forward(slot.port, method, path, query, headers, body)
        except httpx.ConnectError:
            pool.release(state, slot.worker_id)
            await asyncio.to_thread(_drop, state, slot.worker_id)
            if attempt == 0:
                continue
            answer = Answer(502, b"worker unreachable: connection refused", {})
        except httpx.HTTPError as exc:
            pool.release(state, slot.worker_id)
            pool.check_worker(state, slot.worker_id)
            answer = Answer(502, f"worker unreachable: {type(exc).__name__}".encode(), {})
        else:
            pool.release(state, slot.worker_id)
        break
    latency = (time.monotonic() - started) * 1000
    record_request(state, str(endpoint["id"]), latency, answer.status, cold)
    answer.headers["x-dumont-worker"] = str(slot.worker_id)
    answer.headers["x-dumont-cold-start"] = "1" if cold else "0"
    return answer


def _drop(state: AppState, worker_id: int) -> None:
    """Stop a worker that no longer serves (unless another request already did)."""
    p = pool.pool_of(state)
    row = state.store.query_one(
        "SELECT * FROM endpoint_workers WHERE id = ? AND status IN ('starting', 'ready')",
        (worker_id,),
    )
    if row is None:
        return
    with p.guard:
        if worker_id in p.stopping:
            return
        p.stopping.add(worker_id)
    pool.stop_worker(state, row, "failed")
