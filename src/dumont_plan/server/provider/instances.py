"""Instances: local sandboxes standing in for rented machines of the simulated market.

An instance rents one market offer (nobody else can rent it until it is deleted) and owns a
sandbox `<sandboxes>/instances/<id>/` whose `workspace/` is its disk; its "processes" are the
`onstart_cmd` run with `bash -c` in the workspace, in a session of their own, output appended to
`<sandbox>/onstart.log`.

Statuses (`status` = intended, `actual_status` = actual, provider vocabulary §3.2):

| situation                | status    | actual_status |
|--------------------------|-----------|---------------|
| booting (create, resume) | `running` | `loading`     |
| ready                    | `running` | `running`     |
| paused                   | `stopped` | `stopped`     |
| boot failed              | `error`   | `exited`      |

A boot takes the machine's `boot_seconds` (half of it on resume) divided by the server time scale
(`DUMONT_SERVER_TIME_SCALE` or `settings.extra["time_scale"]`, default 1, shared with the jobs:
`10` makes boots ten times faster; tests use it). Boot attempt *n* of a user on a
machine (n = how many instances the user created on that machine before) fails when the market
says `machine.boot_fails(n)`; a failed boot is recorded in the user's machine history (stage
`loading`), a first successful boot as a success with its time to ready. Deleting an instance
records nothing, except `reason=boot_timeout` while it is still loading (a client's readiness
deadline: a `loading` failure) and `reason=gpu_failure` (an `error` failure). So a wizard race
that cancels its losers (`reason=race_loser`, or no reason) never punishes them.

Pausing stops the processes (SIGTERM, SIGKILL after a grace) and keeps the disk; resuming boots
again and restarts `onstart_cmd`. `pause_instance(..., freeze=True)` (serverless `fast` mode, no
route) SIGSTOPs them instead, and resuming then continues them at once.

Cost accrues by state: loading and running at the machine's current price (spot min bid with
`use_spot`), stopped and exited at `STORAGE_DPH` (frozen at `FROZEN_DPH`), deleted nothing.
An instance paused in serverless `spot` mode is `released`: its offer is rentable by anybody
again and resuming it is refused (the serverless wake bids for a machine, serverless.py).

Transitions happen in the reconciler (every tick) and lazily on reads, under a per-instance lock,
so a poll sees `running` as soon as the boot time has passed.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from dumont_plan.errors import InstanceError
from dumont_plan.server.context import AppState
from dumont_plan.server.provider import instance_processes as processes
from dumont_plan.server.provider import isolation
from dumont_plan.server.provider.agent import agent_env
from dumont_plan.server.provider.history import LOCAL_PROVIDER, Attempt, iso, record_attempt
from dumont_plan.server.provider.jobs import OnInsert, time_scale
from dumont_plan.server.provider.market import Machine, Market, get_market
from dumont_plan.server.provider.sandbox import Sandbox
from dumont_plan.server.provider.usage import sample_usage, usage_of
from dumont_plan.server.store import dumps, loads

STORAGE_DPH = 0.005
FROZEN_DPH = 0.01  # a frozen (SIGSTOPped) instance keeps its memory: CPU standby
RESUME_BOOT_FACTOR = 0.5
DELETE_GRACE_SECONDS = 0.5  # delete destroys the machine: a short courtesy only
DEFAULT_IMAGE = "pytorch/pytorch:2.1.0-cuda12.1-cudnn8-runtime"
ALWAYS_EXPOSED_PORT = 8080
LOCALHOST = "127.0.0.1"


@dataclass(frozen=True)
class CreateParams:
    offer_id: int
    image: str = DEFAULT_IMAGE
    disk_size: float = 100
    label: str | None = None
    ports: tuple[int, ...] = (ALWAYS_EXPOSED_PORT,)
    onstart_cmd: str | None = None
    use_spot: bool = False


def market_of(state: AppState) -> Market:
    return get_market(state.settings.market_seed, state.settings.market_size)


def sandbox_of(state: AppState, instance_id: int) -> Sandbox:
    return Sandbox(state.settings.sandboxes_dir / "instances" / str(instance_id))


_LOCKS: dict[int, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock(instance_id: int) -> threading.RLock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(instance_id, threading.RLock())


# ---------------------------------------------------------------------------- reads


def rented_offer_ids(state: AppState) -> set[int]:
    """Offers currently held by a live instance of any user (not offered to anybody); an
    instance paused in serverless spot mode has released its offer (`released`)."""
    rows = state.store.query(
        "SELECT offer_id FROM instances WHERE deleted_at IS NULL AND released = 0"
    )
    return {int(r["offer_id"]) for r in rows}


def _row(state: AppState, user_id: int, instance_id: int) -> sqlite3.Row:
    row = state.store.query_one(
        "SELECT * FROM instances WHERE id = ? AND user_id = ? AND deleted_at IS NULL",
        (instance_id, user_id),
    )
    if row is None:
        raise InstanceError(404, f"Instance {instance_id} not found")
    return row


def _rate(row: sqlite3.Row, machine: Machine | None, now: float) -> float:
    if row["deleted_at"] is not None:
        return 0.0
    if row["actual_status"] in ("loading", "running"):
        return machine.price(bool(row["use_spot"]), now) if machine else 0.0
    return FROZEN_DPH if row["frozen"] else STORAGE_DPH


def _cost(row: sqlite3.Row, machine: Machine | None, now: float) -> float:
    """Accrued cost up to `now`: the folded part plus the open interval at the current rate."""
    open_hours = max(0.0, now - float(row["cost_since"])) / 3600
    return float(row["cost"]) + _rate(row, machine, now) * open_hours


def instance_json(state: AppState, row: sqlite3.Row, now: float | None = None) -> dict[str, Any]:
    """The contract's instance object (§3.2) plus additive fields."""
    at = time.time() if now is None else now
    machine = market_of(state).by_offer(int(row["offer_id"]))
    instance_id = int(row["id"])
    running = row["actual_status"] == "running"
    price = machine.price(bool(row["use_spot"]), at) if machine else 0.0
    ssh_port = 20000 + instance_id % 40000
    ports = sorted(set(loads(row["ports"], [])) | {ALWAYS_EXPOSED_PORT})
    port_map: dict[str, Any] = {"22/tcp": [{"HostIp": LOCALHOST, "HostPort": str(ssh_port)}]}
    for port in ports:
        port_map[f"{port}/tcp"] = [{"HostIp": LOCALHOST, "HostPort": str(port)}]
    usage = usage_of(instance_id) if running else None
    return {
        "id": instance_id,
        "status": row["status"],
        "actual_status": row["actual_status"],
        "gpu_name": row["gpu_name"],
        "num_gpus": int(row["num_gpus"]),
        # Provider units (quirk 15): RAM in MB in instance objects.
        "gpu_ram": machine.gpu_ram * 1024 if machine else 0.0,
        "cpu_cores": machine.cpu_cores if machine else 0,
        "cpu_ram": machine.cpu_ram * 1024 if machine else 0.0,
        "disk_space": float(row["disk_size"]),
        "dph_total": price,
        "public_ipaddr": LOCALHOST if running else None,
        "ssh_host": LOCALHOST if running else None,
        "ssh_port": ssh_port if running else None,
        "start_date": iso(float(row["created_at"])),
        "label": row["label"],
        "ports": port_map if running else None,
        # No GPU here: the CPU of the instance's process tree stands in for GPU utilisation.
        "gpu_util": usage.cpu_percent if usage else (0.0 if running else None),
        "gpu_temp": None,
        "cpu_util": usage.cpu_percent if usage else (0.0 if running else None),
        "ram_used": usage.rss_mb if usage else (0.0 if running else None),
        "ram_total": machine.cpu_ram * 1024 if machine else None,
        "provider": "local",
        "cpu_standby": None,
        "total_dph": price,
        # Additive fields.
        "machine_id": row["machine_id"],
        "offer_id": int(row["offer_id"]),
        "region": machine.region if machine else None,
        "geolocation": machine.geolocation if machine else None,
        "use_spot": bool(row["use_spot"]),
        "image": row["image"],
        "status_msg": row["status_msg"],
        "total_cost": round(_cost(row, machine, at), 6),
        # What is billed now ($/h): the machine's price while it runs, storage when paused
        # (`dph_total` stays the machine's price, as on the real platform).
        "billed_dph": round(_rate(row, machine, at), 6),
    }


def get_instance(state: AppState, user_id: int, instance_id: int) -> dict[str, Any]:
    now = time.time()
    advance(state, instance_id, now)
    return instance_json(state, _row(state, user_id, instance_id), now)


def list_instances(state: AppState, user_id: int, status: str | None) -> list[dict[str, Any]]:
    """The user's live instances; `status` matches status or actual_status (case-insensitive);
    `paused` also matches `stopped` (the provider's word for a paused instance)."""
    now = time.time()
    due = state.store.query(
        "SELECT id FROM instances WHERE user_id = ? AND deleted_at IS NULL "
        "AND actual_status = 'loading' AND ready_at <= ?",
        (user_id, now),
    )
    for r in due:
        advance(state, int(r["id"]), now)
    rows = state.store.query(
        "SELECT * FROM instances WHERE user_id = ? AND deleted_at IS NULL ORDER BY id", (user_id,)
    )
    wanted = (status or "").strip().lower()
    result = []
    for row in rows:
        if wanted:
            states = {str(row["status"]).lower(), str(row["actual_status"]).lower()}
            if wanted not in states and not (wanted == "paused" and "stopped" in states):
                continue
        result.append(instance_json(state, row, now))
    return result


# ---------------------------------------------------------------------------- create


def create_instance(
    state: AppState,
    user_id: int,
    params: CreateParams,
    on_insert: OnInsert | None = None,
) -> dict[str, Any]:
    """Rent an offer. `on_insert(conn, view)` runs in the transaction of the INSERT (the
    idempotency key is stored there, committed with the row)."""
    machine = market_of(state).by_offer(params.offer_id)
    if machine is None:
        raise InstanceError(
            404,
            f"Offer {params.offer_id} not found; search offers with GET /api/v1/instances/offers",
        )
    if params.disk_size > machine.disk_space:
        raise InstanceError(
            400,
            f"disk_size {params.disk_size:g} GB is above offer {params.offer_id}'s disk of "
            f"{machine.disk_space:g} GB; ask for less or pick another offer",
        )
    now = time.time()
    with state.store.tx() as conn:
        owned = conn.execute(
            "SELECT COUNT(*) FROM instances WHERE user_id = ? AND deleted_at IS NULL", (user_id,)
        ).fetchone()[0]
        limit = state.settings.max_instances
        if int(owned) >= limit:
            raise InstanceError(
                429,
                f"instance limit reached: this server allows {limit} instance(s) per user and "
                f"you have {owned}; delete one you no longer need (dumont instance delete ID)",
            )
        taken = conn.execute(
            "SELECT 1 FROM instances WHERE offer_id = ? AND deleted_at IS NULL AND released = 0",
            (params.offer_id,),
        ).fetchone()
        if taken is not None:
            raise InstanceError(
                400,
                f"Offer {params.offer_id} is no longer available (already rented); "
                "search offers again and pick another",
            )
        attempt = int(
            conn.execute(
                "SELECT COUNT(*) FROM instances WHERE user_id = ? AND machine_id = ?",
                (user_id, machine.machine_id),
            ).fetchone()[0]
        )
        cursor = conn.execute(
            "INSERT INTO instances (user_id, offer_id, machine_id, gpu_name, num_gpus, use_spot, "
            "image, disk_size, label, ports, onstart_cmd, status, actual_status, boot_attempt, "
            "boot_fails, ready_at, created_at, cost, cost_since) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', 'loading', ?, ?, ?, ?, 0, ?)",
            (
                user_id,
                machine.offer_id,
                machine.machine_id,
                machine.gpu_name,
                machine.num_gpus,
                int(params.use_spot),
                params.image,
                params.disk_size,
                params.label,
                dumps(sorted(set(params.ports))),
                params.onstart_cmd,
                attempt,
                int(machine.boot_fails(attempt)),
                now + machine.boot_seconds / time_scale(state),
                now,
                now,
            ),
        )
        instance_id = int(cursor.lastrowid or 0)
        if on_insert is not None:
            inserted = conn.execute("SELECT * FROM instances WHERE id = ?", (instance_id,))
            on_insert(conn, instance_json(state, inserted.fetchone(), now))
        sandbox = sandbox_of(state, instance_id)
        sandbox.create()
    return instance_json(state, _row(state, user_id, instance_id), now)


# ---------------------------------------------------------------------------- transitions


def _fold(row: sqlite3.Row, machine: Machine | None, now: float) -> float:
    return round(_cost(row, machine, now), 9)


def advance(state: AppState, instance_id: int, now: float | None = None) -> None:
    """Finish a due boot of `instance_id`: running (then start its processes) or exited."""
    at = time.time() if now is None else now
    with _lock(instance_id):
        row = state.store.query_one(
            "SELECT * FROM instances WHERE id = ? AND deleted_at IS NULL "
            "AND actual_status = 'loading' AND ready_at <= ?",
            (instance_id, at),
        )
        if row is None:
            return
        machine = market_of(state).by_offer(int(row["offer_id"]))
        first_boot = not row["booted"]
        attempt = Attempt(
            provider=LOCAL_PROVIDER,
            machine_id=str(row["machine_id"]),
            success=True,
            offer_id=str(row["offer_id"]),
            gpu_name=str(row["gpu_name"]),
            price_per_hour=machine.price(bool(row["use_spot"]), at) if machine else None,
            instance_id=str(instance_id),
        )
        with state.store.tx() as conn:
            cost = _fold(row, machine, at)
            if first_boot and row["boot_fails"]:
                conn.execute(
                    "UPDATE instances SET status = 'error', actual_status = 'exited', "
                    "status_msg = ?, ready_at = NULL, cost = ?, cost_since = ? WHERE id = ?",
                    ("boot failed: the machine did not become ready", cost, at, instance_id),
                )
                record_attempt(
                    conn,
                    int(row["user_id"]),
                    replace(
                        attempt,
                        success=False,
                        failure_stage="loading",
                        failure_reason="boot failed: the machine did not become ready",
                    ),
                    at,
                )
                return
            conn.execute(
                "UPDATE instances SET status = 'running', actual_status = 'running', "
                "status_msg = NULL, booted = 1, ready_at = NULL, cost = ?, cost_since = ? "
                "WHERE id = ?",
                (cost, at, instance_id),
            )
            if first_boot:
                ready = round(at - float(row["created_at"]), 3)
                record_attempt(
                    conn,
                    int(row["user_id"]),
                    replace(attempt, time_to_ready_seconds=ready),
                    at,
                )
        _start_processes(state, row)


def pause_instance(
    state: AppState, user_id: int, instance_id: int, *, freeze: bool = False
) -> dict[str, Any]:
    """Stop the processes (keep the disk); `freeze=True` suspends them (SIGSTOP) instead."""
    now = time.time()
    advance(state, instance_id, now)
    with _lock(instance_id):
        row = _row(state, user_id, instance_id)
        message = f"Instance {instance_id} paused successfully"
        if row["actual_status"] == "stopped":
            return {"success": True, "message": message}
        frozen = freeze and row["actual_status"] == "running" and processes.freeze(_leader(row))
        if not frozen:
            processes.stop(_leader(row))
        machine = market_of(state).by_offer(int(row["offer_id"]))
        with state.store.tx() as conn:
            conn.execute(
                "UPDATE instances SET status = 'stopped', actual_status = 'stopped', "
                "status_msg = NULL, ready_at = NULL, frozen = ?, pid = CASE WHEN ? THEN pid END, "
                "pid_start = CASE WHEN ? THEN pid_start END, cost = ?, cost_since = ? "
                "WHERE id = ?",
                (int(frozen), int(frozen), int(frozen), _fold(row, machine, now), now, instance_id),
            )
        return {"success": True, "message": message}


def resume_instance(state: AppState, user_id: int, instance_id: int) -> dict[str, Any]:
    """Start a paused (or failed) instance again: a short boot, then its processes restart;
    a frozen one continues at once."""
    now = time.time()
    advance(state, instance_id, now)
    with _lock(instance_id):
        row = _row(state, user_id, instance_id)
        message = f"Instance {instance_id} resumed successfully"
        if row["status"] == "running":
            return {"success": True, "message": message}
        if row["released"]:
            raise InstanceError(
                409,
                f"Instance {instance_id} gave its machine back to the spot market while paused "
                f"(serverless spot mode); wake it with POST /api/v1/serverless/wake/{instance_id}, "
                "which bids for a machine again",
            )
        machine = market_of(state).by_offer(int(row["offer_id"]))
        cost = _fold(row, machine, now)
        if row["frozen"] and processes.thaw(_leader(row)):
            state.store.execute(
                "UPDATE instances SET status = 'running', actual_status = 'running', frozen = 0, "
                "cost = ?, cost_since = ? WHERE id = ?",
                (cost, now, instance_id),
            )
            return {"success": True, "message": message}
        boot = machine.boot_seconds if machine else 1.0
        if row["booted"]:
            boot *= RESUME_BOOT_FACTOR
        state.store.execute(
            "UPDATE instances SET status = 'running', actual_status = 'loading', "
            "status_msg = NULL, frozen = 0, pid = NULL, pid_start = NULL, ready_at = ?, "
            "cost = ?, cost_since = ? WHERE id = ?",
            (now + boot / time_scale(state), cost, now, instance_id),
        )
        return {"success": True, "message": message}


DELETE_FAILURES = {
    "boot_timeout": ("loading", "not ready in time (reported by the client)"),
    "gpu_failure": ("error", "GPU failure (reported by the client)"),
}


def delete_instance(
    state: AppState, user_id: int, instance_id: int, reason: str = "user_request"
) -> dict[str, Any]:
    """Kill the processes, remove the sandbox, mark the row deleted (it leaves every list)."""
    now = time.time()
    advance(state, instance_id, now)
    with _lock(instance_id):
        row = _row(state, user_id, instance_id)
        processes.stop(_leader(row), DELETE_GRACE_SECONDS)
        machine = market_of(state).by_offer(int(row["offer_id"]))
        failure = DELETE_FAILURES.get(reason)
        if reason == "boot_timeout" and (row["actual_status"] != "loading" or row["booted"]):
            failure = None
        with state.store.tx() as conn:
            conn.execute(
                "UPDATE instances SET deleted_at = ?, cost = ?, cost_since = ?, pid = NULL, "
                "pid_start = NULL, ready_at = NULL WHERE id = ?",
                (now, _fold(row, machine, now), now, instance_id),
            )
            if failure is not None:
                stage, why = failure
                record_attempt(
                    conn,
                    user_id,
                    Attempt(
                        provider=LOCAL_PROVIDER,
                        machine_id=str(row["machine_id"]),
                        success=False,
                        offer_id=str(row["offer_id"]),
                        gpu_name=str(row["gpu_name"]),
                        price_per_hour=machine.price(bool(row["use_spot"]), now)
                        if machine
                        else None,
                        instance_id=str(instance_id),
                        failure_stage=stage,
                        failure_reason=why,
                    ),
                    now,
                )
        shutil.rmtree(sandbox_of(state, instance_id).root, ignore_errors=True)
        return {"success": True, "message": f"Instance {instance_id} destroyed successfully"}


def _leader(row: sqlite3.Row) -> processes.Leader:
    pid = row["pid"]
    return processes.Leader(int(row["id"]), int(pid) if pid else None, row["pid_start"])


def _start_processes(state: AppState, row: sqlite3.Row) -> None:
    command = row["onstart_cmd"]
    if not command:
        return
    instance_id = int(row["id"])
    config = {"disk_size": row["disk_size"]}
    policy = isolation.workload_sandbox(config, state.settings, int(row["user_id"]))
    # A fine-tune deploy's server also reads the model cache (`ft_deploy.py`).
    policy["shared"] = sorted({*policy["shared"], *loads(row["shared_paths"], [])})
    policy["env"] = agent_env(state, instance_id)  # heartbeats of its own agent (agent.py)
    leader = processes.start(instance_id, sandbox_of(state, instance_id), str(command), policy)
    if leader is not None:
        state.store.execute(
            "UPDATE instances SET pid = ?, pid_start = ? WHERE id = ?",
            (leader.pid, leader.start_time, instance_id),
        )


# ---------------------------------------------------------------------------- reconciler


def reconcile_instances(state: AppState) -> None:
    """One supervision pass: finish due boots, reap exited processes, sample utilisation."""
    now = time.time()
    due = state.store.query(
        "SELECT id FROM instances WHERE deleted_at IS NULL AND actual_status = 'loading' "
        "AND ready_at <= ?",
        (now,),
    )
    for r in due:
        advance(state, int(r["id"]), now)
    processes.reap_all()
    running = state.store.query(
        "SELECT id, pid FROM instances WHERE deleted_at IS NULL AND actual_status = 'running' "
        "AND pid IS NOT NULL"
    )
    sample_usage({int(r["id"]): int(r["pid"]) for r in running}, now)
