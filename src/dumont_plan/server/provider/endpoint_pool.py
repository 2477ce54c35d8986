"""The workers of serverless endpoints: sandboxed processes serving HTTP on a loopback `$PORT`.

A worker is the endpoint's `command` run like an instance's `onstart_cmd`
(`instance_processes.start`: bubblewrap, the workload uid, the control plane's data hidden)
with `PORT` (a free loopback port) and the endpoint's `env_vars` in its environment, in a
sandbox `<sandboxes>/endpoints/<endpoint id>/<worker id>/`. Its process tag id is
`WORKER_ID_BASE + worker id`, beyond every instance id, so signals never reach an instance.

Worker statuses: `starting` (launched, not yet accepting TCP connections on its port) ->
`ready` (gets traffic) -> `stopped`; `failed` when the process exits before or while serving,
or does not serve within `BOOT_TIMEOUT_SECONDS`.
A worker becomes ready when a TCP connect to its port succeeds (the health check); the time
from launch to that is its cold start.

Requests in flight per worker and requests waiting per endpoint are this process's memory
(`Pool`), guarded by one lock shared with the reconciler thread: a worker the reconciler
chose to stop (idle, `stopping`) is never handed a request, and one with a request in flight
is never chosen.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from dumont_plan.server.context import AppState
from dumont_plan.server.provider import instance_processes as processes
from dumont_plan.server.provider import isolation
from dumont_plan.server.provider.sandbox import Sandbox
from dumont_plan.server.store import loads

WORKER_ID_BASE = 1_000_000_000
STOP_GRACE_SECONDS = 1.0
BOOT_TIMEOUT_SECONDS = 120.0  # a worker not serving by then is stopped (`failed`)
LOG_TAIL_BYTES = 600
LOCALHOST = "127.0.0.1"
SERVICE = "endpoint_pool"
LIVE = ("starting", "ready")


@dataclass
class Pool:
    """Requests in flight per worker id, waiting per endpoint id, workers being stopped."""

    guard: threading.Lock = field(default_factory=threading.Lock)
    inflight: dict[int, int] = field(default_factory=dict)
    waiting: dict[str, int] = field(default_factory=dict)
    stopping: set[int] = field(default_factory=set)


_services = threading.Lock()


def pool_of(state: AppState) -> Pool:
    """The app's pool, made on first use; its workers are stopped when the app shuts down."""
    with _services:
        found = state.services.get(SERVICE)
        if isinstance(found, Pool):
            return found
        created = Pool()
        state.services[SERVICE] = created
        state.closers.append(lambda: stop_all(state))
        return created


def sandbox_of(state: AppState, endpoint_id: str, worker_id: int) -> Sandbox:
    return Sandbox(state.settings.sandboxes_dir / "endpoints" / endpoint_id / str(worker_id))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def accepts(port: int) -> bool:
    """The health check: something accepts TCP connections on the loopback port."""
    with contextlib.suppress(OSError), socket.create_connection((LOCALHOST, port), timeout=0.2):
        return True
    return False


def _leader(row: sqlite3.Row) -> processes.Leader:
    pid = row["pid"]
    return processes.Leader(
        WORKER_ID_BASE + int(row["id"]), int(pid) if pid else None, row["pid_start"]
    )


def _log_tail(path: Path) -> str:
    try:
        with open(path, "rb") as log:
            log.seek(0, 2)
            log.seek(max(0, log.tell() - LOG_TAIL_BYTES))
            return log.read().decode(errors="replace").strip()
    except OSError:
        return ""


def live_workers(state: AppState, endpoint_id: str) -> list[sqlite3.Row]:
    return state.store.query(
        "SELECT * FROM endpoint_workers WHERE endpoint_id = ? AND status IN ('starting', 'ready') "
        "ORDER BY id",
        (endpoint_id,),
    )


def start_worker(state: AppState, endpoint: sqlite3.Row) -> int:
    """Launch one worker of `endpoint` (status `starting`, or `failed` when it cannot start)."""
    port = free_port()
    worker_id = state.store.execute(
        "INSERT INTO endpoint_workers (endpoint_id, port, status, started_at, last_used_at) "
        "VALUES (?, ?, 'starting', ?, ?)",
        (endpoint["id"], port, time.time(), state.clock.now()),
    )
    sandbox = sandbox_of(state, str(endpoint["id"]), worker_id)
    sandbox.create()
    policy = isolation.workload_sandbox({}, state.settings, int(endpoint["user_id"]))
    policy["env"] = {
        **loads(endpoint["env_vars"], {}),
        "PORT": str(port),
        "DUMONT_ENDPOINT_ID": str(endpoint["id"]),
    }
    leader = processes.start(WORKER_ID_BASE + worker_id, sandbox, str(endpoint["command"]), policy)
    if leader is None:
        _finish(state, worker_id, "failed", _log_tail(sandbox.root / "onstart.log"))
    else:
        state.store.execute(
            "UPDATE endpoint_workers SET pid = ?, pid_start = ? WHERE id = ?",
            (leader.pid, leader.start_time, worker_id),
        )
    return worker_id


def _finish(state: AppState, worker_id: int, status: str, error: str | None = None) -> None:
    state.store.execute(
        "UPDATE endpoint_workers SET status = ?, stopped_at = ?, error = ? "
        "WHERE id = ? AND status IN ('starting', 'ready')",
        (status, time.time(), error, worker_id),
    )


def check_worker(state: AppState, worker_id: int) -> str:
    """Advance a worker: `starting` -> `ready` once its port accepts, -> `failed` when its
    process is gone. Its status after the check."""
    row = state.store.query_one("SELECT * FROM endpoint_workers WHERE id = ?", (worker_id,))
    if row is None:
        return "stopped"
    status = str(row["status"])
    if status not in LIVE:
        return status
    leader = _leader(row)
    processes.reap(leader.instance_id)
    launching = row["pid"] is None  # start_worker has not recorded its process yet
    if not launching and not leader.any_alive():
        root = sandbox_of(state, str(row["endpoint_id"]), worker_id).root
        _finish(state, worker_id, "failed", _log_tail(root / "onstart.log") or "exited")
        return "failed"
    if status == "starting" and not launching and accepts(int(row["port"])):
        now = time.time()
        state.store.execute(
            "UPDATE endpoint_workers SET status = 'ready', ready_at = ?, cold_start_seconds = ? "
            "WHERE id = ? AND status = 'starting'",
            (now, now - float(row["started_at"]), worker_id),
        )
        return "ready"
    if status == "starting" and time.time() - float(row["started_at"]) > BOOT_TIMEOUT_SECONDS:
        stop_worker(state, row, "failed")
        state.store.execute(
            "UPDATE endpoint_workers SET error = ? WHERE id = ?",
            (f"did not accept connections on $PORT within {BOOT_TIMEOUT_SECONDS:g} s", worker_id),
        )
        return "failed"
    return status


def stop_worker(state: AppState, row: sqlite3.Row, status: str = "stopped") -> None:
    """Stop every process of the worker, remove its workspace, record it `status`."""
    processes.stop(_leader(row), grace=STOP_GRACE_SECONDS)
    sandbox_of(state, str(row["endpoint_id"]), int(row["id"])).destroy()
    _finish(state, int(row["id"]), status)
    pool = pool_of(state)
    with pool.guard:
        pool.inflight.pop(int(row["id"]), None)
        pool.stopping.discard(int(row["id"]))


def stop_endpoint_workers(state: AppState, endpoint_id: str) -> int:
    """Stop all the live workers of an endpoint (pause, delete); how many there were."""
    rows = live_workers(state, endpoint_id)
    pool = pool_of(state)
    with pool.guard:
        pool.stopping.update(int(r["id"]) for r in rows)
    for row in rows:
        stop_worker(state, row)
    return len(rows)


def stop_all(state: AppState) -> None:
    """At shutdown: no worker outlives its control plane (their requests die with it)."""
    for row in state.store.query(
        "SELECT * FROM endpoint_workers WHERE status IN ('starting', 'ready')"
    ):
        stop_worker(state, row)


def release(state: AppState, worker_id: int) -> None:
    """A request on the worker is over: one slot free, the worker's idle timer restarts."""
    pool = pool_of(state)
    with pool.guard:
        pool.inflight[worker_id] = max(0, pool.inflight.get(worker_id, 0) - 1)
    state.store.execute(
        "UPDATE endpoint_workers SET last_used_at = ? WHERE id = ?",
        (state.clock.now(), worker_id),
    )


def scale(state: AppState, endpoint: sqlite3.Row) -> None:
    """One reconciler step of an endpoint: check its workers, stop the idle ones above
    `min_instances` (all of them when paused), start workers up to `min_instances`."""
    endpoint_id = str(endpoint["id"])
    for row in live_workers(state, endpoint_id):
        check_worker(state, int(row["id"]))
    if endpoint["paused"] or endpoint["deleted_at"] is not None:
        stop_endpoint_workers(state, endpoint_id)
        return
    live = live_workers(state, endpoint_id)
    excess = len(live) - int(endpoint["min_instances"])
    now = state.clock.now()
    timeout = float(endpoint["idle_timeout_seconds"])
    idle = sorted(
        (r for r in live if r["status"] == "ready" and now - float(r["last_used_at"]) >= timeout),
        key=lambda r: float(r["last_used_at"]),
    )
    pool = pool_of(state)
    chosen: list[sqlite3.Row] = []
    with pool.guard:
        for row in idle:
            if len(chosen) >= excess:
                break
            if pool.inflight.get(int(row["id"]), 0) == 0:
                pool.stopping.add(int(row["id"]))
                chosen.append(row)
    for row in chosen:
        stop_worker(state, row)
    if not endpoint["command"]:
        return
    with pool.guard:  # counted with the request path's starts, never above max_instances
        now_live = [
            w for w in live_workers(state, endpoint_id) if int(w["id"]) not in pool.stopping
        ]
        wanted = min(int(endpoint["min_instances"]), int(endpoint["max_instances"]))
        for _ in range(max(0, wanted - len(now_live))):
            start_worker(state, endpoint)
