"""Serverless endpoints (contract §7.3): the objects, their real metrics and cost.

An endpoint belongs to its creator (another user's id is a 404). Its status is derived:
`paused` after a pause, `provisioning` while fewer workers are ready than `min_instances`,
`running` otherwise (an endpoint with `min_instances` 0 runs at once: it scales from zero on
its first request). Its workers are in `endpoint_pool.py`, the request path in
`endpoint_proxy.py`.

Metrics come from the proxied requests of the last 24 h (`endpoint_requests`): total,
requests per second over the last minute, average and p99 latency (nearest rank), cold starts
(workers that booted), `uptime_percent` (the share answered without a 5xx). `cost_24h` is the
workers' running time in the last 24 h times the market $/h of the endpoint's GPU (spot price
when `machine_type` is `spot`, on-demand otherwise).
"""

from __future__ import annotations

import math
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dumont_plan.errors import ServerlessError
from dumont_plan.server.context import AppState
from dumont_plan.server.provider import endpoint_pool as pool
from dumont_plan.server.provider.market import canonical_gpu, job_hourly_price
from dumont_plan.server.store import dumps, loads

DAY = 86400.0
RATE_WINDOW = 60.0
PRICE_PER_REQUEST = 0.00001
INVOKE_PATH = "/api/v1/serverless/endpoints/{id}/invoke/"


@dataclass(frozen=True)
class EndpointSpec:
    name: str
    docker_image: str
    command: str | None = None
    machine_type: str = "spot"
    gpu_name: str = "RTX 4090"
    region: str = "US"
    model_id: str = ""
    env_vars: dict[str, str] = field(default_factory=dict)
    min_instances: int = 0
    max_instances: int = 5
    concurrency: int = 1
    idle_timeout_seconds: int = 60


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def own_endpoint(state: AppState, user_id: int, endpoint_id: str) -> sqlite3.Row:
    row = state.store.query_one(
        "SELECT * FROM endpoints WHERE id = ? AND user_id = ? AND deleted_at IS NULL",
        (endpoint_id, user_id),
    )
    if row is None:
        raise ServerlessError(404, f"Endpoint {endpoint_id} not found")
    return row


def price_per_hour(row: sqlite3.Row) -> float:
    spot = str(row["machine_type"]).strip().lower() == "spot"
    return round(job_hourly_price(str(row["gpu_name"]), spot), 4)


def _running_seconds(state: AppState, endpoint_id: str, since: float, now: float) -> float:
    rows = state.store.query(
        "SELECT started_at, stopped_at FROM endpoint_workers WHERE endpoint_id = ? "
        "AND (stopped_at IS NULL OR stopped_at > ?)",
        (endpoint_id, since),
    )
    total = 0.0
    for r in rows:
        end = float(r["stopped_at"]) if r["stopped_at"] is not None else now
        total += max(0.0, end - max(since, float(r["started_at"])))
    return total


def _p99(latencies: list[float]) -> float:
    if not latencies:
        return 0.0
    ordered = sorted(latencies)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def metrics(state: AppState, row: sqlite3.Row, now: float | None = None) -> dict[str, Any]:
    """The endpoint's `metrics` and `pricing` objects, plus the raw figures `stats` sums."""
    now = time.time() if now is None else now
    since = now - DAY
    requests = state.store.query(
        "SELECT at, latency_ms, status FROM endpoint_requests WHERE endpoint_id = ? AND at > ?",
        (row["id"], since),
    )
    latencies = [float(r["latency_ms"]) for r in requests]
    recent = sum(1 for r in requests if float(r["at"]) > now - RATE_WINDOW)
    failed = sum(1 for r in requests if int(r["status"]) >= 500)
    boots = state.store.query(
        "SELECT cold_start_seconds FROM endpoint_workers WHERE endpoint_id = ? "
        "AND cold_start_seconds IS NOT NULL AND ready_at > ?",
        (row["id"], since),
    )
    cold = [float(b["cold_start_seconds"]) for b in boots]
    hours = _running_seconds(state, str(row["id"]), since, now) / 3600
    rate = price_per_hour(row)
    return {
        "metrics": {
            "requests_per_sec": round(recent / RATE_WINDOW, 4),
            "avg_latency_ms": round(sum(latencies) / len(latencies), 3) if latencies else 0.0,
            "p99_latency_ms": round(_p99(latencies), 3),
            "cold_starts_24h": len(cold),
            "total_requests_24h": len(requests),
            "uptime_percent": round(100.0 * (1 - failed / len(requests)), 2) if requests else 100.0,
            "avg_cold_start_seconds": round(sum(cold) / len(cold), 3) if cold else None,
        },
        "pricing": {
            "price_per_hour": rate,
            "price_per_request": PRICE_PER_REQUEST,
            "cost_24h": round(hours * rate, 6),
            "running_hours_24h": round(hours, 6),
        },
        "latency_sum_ms": sum(latencies),
    }


def status_of(state: AppState, row: sqlite3.Row) -> tuple[str, list[sqlite3.Row]]:
    live = pool.live_workers(state, str(row["id"]))
    if row["paused"]:
        return "paused", live
    ready = sum(1 for w in live if w["status"] == "ready")
    return ("provisioning" if ready < int(row["min_instances"]) else "running"), live


def endpoint_json(state: AppState, user_email: str, row: sqlite3.Row) -> dict[str, Any]:
    status, live = status_of(state, row)
    figures = metrics(state, row)
    inflight = pool.pool_of(state).inflight
    return {
        "id": row["id"],
        "name": row["name"],
        "status": status,
        "machine_type": row["machine_type"],
        "gpu_name": row["gpu_name"],
        "region": row["region"],
        "created_at": _iso(float(row["created_at"])),
        "user_email": user_email,
        "docker_image": row["docker_image"],
        "model_id": row["model_id"],
        "env_vars": loads(row["env_vars"], {}),
        "metrics": figures["metrics"],
        "pricing": figures["pricing"],
        "auto_scaling": {
            "enabled": True,
            "min_instances": row["min_instances"],
            "max_instances": row["max_instances"],
            "current_instances": len(live),
        },
        # Additive: the local workload and how it scales, its URL, its workers.
        "command": row["command"],
        "concurrency": row["concurrency"],
        "idle_timeout_seconds": row["idle_timeout_seconds"],
        "url": INVOKE_PATH.format(id=row["id"]),
        "instances": [
            {
                "id": int(w["id"]),
                "status": w["status"],
                "port": int(w["port"]),  # the worker's loopback port (direct calls, benchmark)
                "started_at": _iso(float(w["started_at"])),
                "inflight": inflight.get(int(w["id"]), 0),
            }
            for w in live
        ],
    }


def create_endpoint(state: AppState, user_id: int, spec: EndpointSpec) -> sqlite3.Row:
    endpoint_id = f"ep-{secrets.token_hex(4)}"
    state.store.execute(
        "INSERT INTO endpoints (id, user_id, name, machine_type, gpu_name, region, docker_image, "
        "command, model_id, env_vars, min_instances, max_instances, concurrency, "
        "idle_timeout_seconds, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            endpoint_id,
            user_id,
            spec.name,
            spec.machine_type,
            canonical_gpu(spec.gpu_name),
            spec.region,
            spec.docker_image,
            spec.command,
            spec.model_id,
            dumps(spec.env_vars),
            spec.min_instances,
            spec.max_instances,
            spec.concurrency,
            spec.idle_timeout_seconds,
            time.time(),
        ),
    )
    row = own_endpoint(state, user_id, endpoint_id)
    pool.scale(state, row)  # min_instances workers start now
    return row


UPDATABLE = (
    "min_instances",
    "max_instances",
    "machine_type",
    "command",
    "concurrency",
    "idle_timeout_seconds",
)


def update_endpoint(
    state: AppState, user_id: int, endpoint_id: str, changes: dict[str, Any]
) -> sqlite3.Row:
    """Change the scaling and the price class in place; a new `command` replaces the
    workers (the running ones are stopped, new ones start on demand)."""
    row = own_endpoint(state, user_id, endpoint_id)
    low = changes.get("min_instances", row["min_instances"])
    high = changes.get("max_instances", row["max_instances"])
    if low > high:
        raise ServerlessError(
            422, f"min_instances ({low}) is above max_instances ({high}): lower min or raise max"
        )
    fields = {k: v for k, v in changes.items() if k in UPDATABLE}
    if fields:
        assignments = ", ".join(f"{name} = ?" for name in fields)
        state.store.execute(
            f"UPDATE endpoints SET {assignments} WHERE id = ?",  # names from UPDATABLE only
            (*fields.values(), endpoint_id),
        )
    if "command" in fields and fields["command"] != row["command"]:
        pool.stop_endpoint_workers(state, endpoint_id)
    row = own_endpoint(state, user_id, endpoint_id)
    pool.scale(state, row)
    return row


def set_paused(state: AppState, user_id: int, endpoint_id: str, paused: bool) -> sqlite3.Row:
    own_endpoint(state, user_id, endpoint_id)
    state.store.execute(
        "UPDATE endpoints SET paused = ? WHERE id = ?", (1 if paused else 0, endpoint_id)
    )
    row = own_endpoint(state, user_id, endpoint_id)
    pool.scale(state, row)  # paused: every worker stops; resumed: min_instances start
    return row


def delete_endpoint(state: AppState, user_id: int, endpoint_id: str) -> None:
    own_endpoint(state, user_id, endpoint_id)
    state.store.execute(
        "UPDATE endpoints SET deleted_at = ? WHERE id = ?", (time.time(), endpoint_id)
    )
    pool.stop_endpoint_workers(state, endpoint_id)


def list_endpoints(state: AppState, user_id: int) -> list[sqlite3.Row]:
    return state.store.query(
        "SELECT * FROM endpoints WHERE user_id = ? AND deleted_at IS NULL ORDER BY created_at, id",
        (user_id,),
    )


def stats(state: AppState, user_id: int) -> dict[str, Any]:
    """`GET /serverless/stats`: the caller's endpoints summed."""
    rows = list_endpoints(state, user_id)
    now = time.time()
    figures = [metrics(state, r, now) for r in rows]
    requests = sum(f["metrics"]["total_requests_24h"] for f in figures)
    latency = sum(f["latency_sum_ms"] for f in figures)
    return {
        "total_endpoints": len(rows),
        "total_requests_24h": requests,
        "avg_latency_ms": round(latency / requests, 3) if requests else 0.0,
        "total_cost_24h": round(sum(f["pricing"]["cost_24h"] for f in figures), 6),
        "active_instances": sum(len(pool.live_workers(state, str(r["id"]))) for r in rows),
        "cold_starts_24h": sum(f["metrics"]["cold_starts_24h"] for f in figures),
    }


def record_request(
    state: AppState, endpoint_id: str, latency_ms: float, status: int, cold: bool
) -> None:
    state.store.execute(
        "INSERT INTO endpoint_requests (endpoint_id, at, latency_ms, status, cold_start) "
        "VALUES (?, ?, ?, ?, ?)",
        (endpoint_id, time.time(), latency_ms, status, 1 if cold else 0),
    )


def reconcile_endpoints(state: AppState) -> None:
    """Reconciler tick: scale every live endpoint, stop the workers of deleted ones, forget
    requests older than the metrics window."""
    rows = state.store.query(
        "SELECT e.* FROM endpoints e WHERE e.deleted_at IS NULL OR EXISTS (SELECT 1 FROM "
        "endpoint_workers w WHERE w.endpoint_id = e.id AND w.status IN ('starting', 'ready'))"
    )
    for row in rows:
        pool.scale(state, row)
    if rows:
        state.store.execute("DELETE FROM endpoint_requests WHERE at < ?", (time.time() - DAY,))
