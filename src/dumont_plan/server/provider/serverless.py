"""Serverless auto-pause of instances (contract §7.1, §7.2): policies, idle detection, views.

A policy belongs to the owner of its instance (one per instance, in SQLite: it survives a
restart, paused state included). Each reconciler pass samples every active policy's instance:

- utilisation: while an inference is in flight (`inference-start` without its
  `inference-complete`) 100 %; else a heartbeat of the instance's agent
  (`POST /agent/status`) younger than `HEARTBEAT_FRESH_SECONDS`; else the GPU through NVML
  when the instance's processes hold one (`gpu.py`, pynvml optional); else the CPU share of the
  instance's process tree (`usage.py`) as the stand-in. An instance without processes is idle;
  one whose first sample has no interval yet is left as it was.
- below `gpu_threshold` starts `idle_since` (kept while it stays below, cleared above);
- idle for `idle_timeout_seconds` on the policy clock (`AppState.clock`) pauses it in its mode
  (serverless_pause.py), unless `keep_warm`; `will_pause_at` = idle_since + timeout.

The real platform's quirks are not reproduced: every list and count is the caller's own, a
missing heartbeat does not mean 100 %, and `spot` differs from `economic`.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from dumont_plan.errors import InstanceError, ServerlessError
from dumont_plan.server.context import AppState
from dumont_plan.server.provider import gpu, webhooks
from dumont_plan.server.provider.history import iso
from dumont_plan.server.provider.instances import get_instance, market_of
from dumont_plan.server.provider.serverless_pause import (
    IDLE_DPH,
    MODES,
    PAUSED,
    RECOVERY,
    lock,
    pause,
    policy_row,
    savings_of,
    wake,
)
from dumont_plan.server.provider.usage import usage_of

HEARTBEAT_FRESH_SECONDS = 30.0
HEARTBEATS = "serverless-heartbeats"

# GET /serverless/pricing's static model (contract §7.2).
GPU_RATE = 0.30
ACTIVE_HOURS = 4
IDLE_HOURS = 20
DAYS = 30
AVAILABLE_MODES = [
    {"mode": "spot", "recovery_time": "~30s", "savings": "60-70%"},
    {"mode": "economic", "recovery_time": "~7s", "savings": "~83%"},
    {"mode": "fast", "recovery_time": "<1s", "savings": "~80%"},
]
FEATURES = [
    "Auto-pause on idle (GPU utilisation below a threshold for a timeout)",
    "Three pause modes: fast (frozen, memory kept), economic (stopped), spot (machine released)",
    "Wake on demand or on inference-start, with measured cold starts",
    "Savings tracking and signed webhooks on pause, wake and wake failure",
]


@dataclass(frozen=True)
class PolicySpec:
    mode: str = "spot"
    idle_timeout_seconds: int = 10
    gpu_threshold: float = 5.0
    keep_warm: bool = False
    max_price: float | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None


def heartbeats(state: AppState) -> dict[int, tuple[float, float]]:
    """instance id -> (gpu utilisation, policy-clock time received), this process only."""
    found: dict[int, tuple[float, float]] = state.services.setdefault(HEARTBEATS, {})
    return found


def own_instance(state: AppState, user_id: int, instance_id: int) -> dict[str, Any]:
    """The caller's live instance (ServerlessError 404 otherwise)."""
    try:
        return get_instance(state, user_id, instance_id)
    except InstanceError as exc:
        raise ServerlessError(exc.status, exc.message) from exc


# ---------------------------------------------------------------------------- policies


def enable(state: AppState, user_id: int, instance_id: int, spec: PolicySpec) -> dict[str, Any]:
    """Create or replace the instance's policy (runtime state reset; a pause is kept)."""
    instance = own_instance(state, user_id, instance_id)
    machine = market_of(state).by_offer(int(instance["offer_id"]))
    max_price = spec.max_price
    if max_price is None:  # default: the machine's on-demand price now
        max_price = machine.dph(time.time()) if machine else float(instance["dph_total"])
    sealed = webhooks.seal(state.secret, spec.webhook_secret) if spec.webhook_secret else None
    with lock(instance_id), state.store.tx() as conn:
        conn.execute(
            "INSERT INTO serverless_policies (instance_id, user_id, mode, idle_timeout_seconds, "
            "gpu_threshold, keep_warm, max_price, webhook_url, webhook_secret, enabled_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (instance_id) DO UPDATE SET "
            "mode = excluded.mode, idle_timeout_seconds = excluded.idle_timeout_seconds, "
            "gpu_threshold = excluded.gpu_threshold, keep_warm = excluded.keep_warm, "
            "max_price = excluded.max_price, webhook_url = excluded.webhook_url, "
            "webhook_secret = excluded.webhook_secret, enabled_at = excluded.enabled_at, "
            "idle_since = NULL, current_util = 0, util_source = NULL, inflight = 0, "
            "last_wake_error = NULL, status = CASE WHEN serverless_policies.status = "
            "'wake_failed' THEN 'paused' ELSE serverless_policies.status END",
            (
                instance_id,
                user_id,
                spec.mode,
                spec.idle_timeout_seconds,
                spec.gpu_threshold,
                int(spec.keep_warm),
                max_price,
                spec.webhook_url,
                sealed,
                state.clock.now(),
            ),
        )
    return {
        "instance_id": instance_id,
        "mode": spec.mode,
        "idle_timeout_seconds": spec.idle_timeout_seconds,
        "gpu_threshold": spec.gpu_threshold,
        "keep_warm": spec.keep_warm,
        "checkpoint_enabled": spec.mode == "fast",
        "status": "enabled",
        "message": f"Serverless {spec.mode} mode enabled for instance {instance_id}",
        "behavior": {
            "will_pause_after": f"{spec.idle_timeout_seconds}s of idle",
            "idle_threshold": f"GPU < {spec.gpu_threshold:g}%",
            "recovery_time": RECOVERY[spec.mode],
        },
        # Additive.
        "configured": True,
        "max_price": round(max_price, 4),
        "webhook_url": spec.webhook_url,
        "webhook_secret_set": sealed is not None,
    }


def disable(state: AppState, user_id: int, instance_id: int) -> dict[str, Any]:
    """Resume a paused instance first (a failed wake is a 409 and keeps the policy)."""
    with lock(instance_id):
        policy = policy_row(state, user_id, instance_id)
        resumed = policy["status"] in PAUSED
        if resumed:
            wake(state, user_id, instance_id, trigger="disable")
        state.store.execute(
            "DELETE FROM serverless_policies WHERE instance_id = ? AND user_id = ?",
            (instance_id, user_id),
        )
        heartbeats(state).pop(instance_id, None)
    return {
        "instance_id": instance_id,
        "status": "disabled",
        "message": f"Serverless disabled for instance {instance_id}"
        + (" (resumed first)" if resumed else ""),
        "resumed": resumed,
    }


def configured(state: AppState, user_id: int, instance_id: int) -> bool:
    found = state.store.query_one(
        "SELECT 1 FROM serverless_policies WHERE instance_id = ? AND user_id = ?",
        (instance_id, user_id),
    )
    return found is not None


def _will_pause_at(policy: sqlite3.Row) -> str | None:
    if policy["status"] != "active" or policy["keep_warm"] or policy["idle_since"] is None:
        return None
    return iso(float(policy["idle_since"]) + int(policy["idle_timeout_seconds"]))


def status_json(state: AppState, policy: sqlite3.Row) -> dict[str, Any]:
    """The contract's status object plus additive fields."""
    now = state.clock.now()
    colds = int(policy["cold_starts"])
    return {
        "instance_id": int(policy["instance_id"]),
        "mode": policy["mode"],
        "is_paused": policy["status"] in PAUSED,
        "idle_timeout_seconds": int(policy["idle_timeout_seconds"]),
        "current_gpu_util": float(policy["current_util"]),
        "idle_since": iso(policy["idle_since"]),
        "will_pause_at": _will_pause_at(policy),
        "total_savings_usd": round(savings_of(policy, now), 6),
        "avg_cold_start_seconds": round(float(policy["cold_start_total"]) / colds, 3)
        if colds
        else 0.0,
        # Additive.
        "status": policy["status"],
        "gpu_threshold": float(policy["gpu_threshold"]),
        "keep_warm": bool(policy["keep_warm"]),
        "util_source": policy["util_source"],
        "paused_at": iso(policy["paused_at"]),
        "paused_mode": policy["paused_mode"],
        "last_wake_error": policy["last_wake_error"],
        "max_price": policy["max_price"],
        "webhook_url": policy["webhook_url"],
        "pauses": int(policy["pauses"]),
        "cold_starts": colds,
        "inflight_requests": int(policy["inflight"]),
    }


def status(state: AppState, user_id: int, instance_id: int) -> dict[str, Any]:
    return status_json(state, policy_row(state, user_id, instance_id))


LIST_FIELDS = (
    "instance_id", "mode", "is_paused", "idle_timeout_seconds", "current_gpu_util",
    "will_pause_at", "total_savings_usd",
    # Additive.
    "status", "idle_since", "gpu_threshold", "keep_warm",
)  # fmt: skip


def list_policies(state: AppState, user_id: int) -> dict[str, Any]:
    rows = state.store.query(
        "SELECT p.* FROM serverless_policies p JOIN instances i ON i.id = p.instance_id "
        "WHERE p.user_id = ? AND i.deleted_at IS NULL ORDER BY p.instance_id",
        (user_id,),
    )
    items = []
    for row in rows:
        full = status_json(state, row)
        items.append({key: full[key] for key in LIST_FIELDS} | {"last_checkpoint_id": None})
    return {"count": len(items), "instances": items}


# ---------------------------------------------------------------------------- activity


def inference_start(state: AppState, user_id: int, instance_id: int) -> dict[str, Any]:
    """A request began: the idle timer stops; a paused instance is woken first."""
    with lock(instance_id):
        policy = policy_row(state, user_id, instance_id)
        woken = None
        if policy["status"] in PAUSED:
            woken = wake(state, user_id, instance_id, trigger="inference-start")
        state.store.execute(
            "UPDATE serverless_policies SET inflight = inflight + 1, idle_since = NULL "
            "WHERE instance_id = ?",
            (instance_id,),
        )
    answer: dict[str, Any] = {"status": "ok", "idle_timer": "reset"}
    if woken is not None:
        answer["woken"] = woken
    return answer


def inference_complete(state: AppState, user_id: int, instance_id: int) -> dict[str, Any]:
    """A request ended: with none left in flight the idle timer starts now."""
    with lock(instance_id):
        policy_row(state, user_id, instance_id)
        state.store.execute(
            "UPDATE serverless_policies SET inflight = MAX(0, inflight - 1), "
            "idle_since = CASE WHEN inflight <= 1 AND status = 'active' THEN ? "
            "ELSE idle_since END WHERE instance_id = ?",
            (state.clock.now(), instance_id),
        )
    return {"status": "ok", "idle_timer": "started"}


def heartbeat(
    state: AppState, user_id: int, instance_id: int, utilization: float | None
) -> dict[str, Any]:
    """Record an agent heartbeat of one of the user's instances."""
    own_instance(state, user_id, instance_id)
    now = state.clock.now()
    if utilization is not None:
        heartbeats(state)[instance_id] = (utilization, now)
    configured = state.store.query_one(
        "SELECT 1 FROM serverless_policies WHERE instance_id = ?", (instance_id,)
    )
    return {
        "status": "ok",
        "instance_id": instance_id,
        "received_at": iso(now),
        "gpu_utilization": utilization,
        "serverless": configured is not None,
    }


# ---------------------------------------------------------------------------- reconciler


def _utilisation(
    state: AppState, row: sqlite3.Row, beats: dict[int, tuple[float, float]], now: float
) -> tuple[float, str] | None:
    instance_id = int(row["instance_id"])
    if int(row["inflight"]) > 0:
        return 100.0, "inference"
    beat = beats.get(instance_id)
    if beat is not None and now - beat[1] <= HEARTBEAT_FRESH_SECONDS:
        return beat[0], "agent"
    if row["pid"] is None:
        return 0.0, "cpu"  # no processes: nothing uses the machine
    measured = gpu.utilisation(int(row["pid"]))
    if measured is not None:
        return measured, "nvml"
    usage = usage_of(instance_id)
    if usage is None or not usage.measured:
        return None
    return usage.cpu_percent, "cpu"


def reconcile_serverless(state: AppState) -> None:
    """One pass: sample every active policy's instance, start or clear idle timers, pause the
    instances idle past their timeout."""
    webhooks.start_if_pending(state)
    rows = state.store.query(
        "SELECT p.*, i.actual_status AS instance_status, i.pid AS pid, "
        "i.deleted_at AS instance_deleted FROM serverless_policies p "
        "JOIN instances i ON i.id = p.instance_id"
    )
    if not rows:
        return
    now = state.clock.now()
    beats = heartbeats(state)
    gone: list[tuple[int]] = []
    updates: list[tuple[float, str | None, float | None, int]] = []
    due: list[sqlite3.Row] = []
    for row in rows:
        instance_id = int(row["instance_id"])
        if row["instance_deleted"] is not None:
            gone.append((instance_id,))
            continue
        if row["status"] != "active":
            continue
        if row["instance_status"] != "running":
            if row["idle_since"] is not None or row["util_source"] is not None:
                updates.append((0.0, None, None, instance_id))
            continue
        sample = _utilisation(state, row, beats, now)
        if sample is None:
            continue
        util, source = round(sample[0], 2), sample[1]
        idle = util < float(row["gpu_threshold"])
        since = (row["idle_since"] if row["idle_since"] is not None else now) if idle else None
        if (util, source, since) != (row["current_util"], row["util_source"], row["idle_since"]):
            updates.append((util, source, since, instance_id))  # written only when it moved
        timeout = int(row["idle_timeout_seconds"])
        if since is not None and not row["keep_warm"] and now - float(since) >= timeout:
            due.append(row)
    if updates or gone:
        with state.store.tx() as conn:
            conn.executemany(
                "UPDATE serverless_policies SET current_util = ?, util_source = ?, "
                "idle_since = ? WHERE instance_id = ? AND status = 'active'",
                updates,
            )
            conn.executemany("DELETE FROM serverless_policies WHERE instance_id = ?", gone)
    for row in due:
        pause(state, int(row["user_id"]), int(row["instance_id"]), "idle")


# ---------------------------------------------------------------------------- public views


def public_status(state: AppState, user_id: int | None) -> dict[str, Any]:
    """§7.2's summary; the counts are the caller's own (nobody's without a token)."""
    rows = (
        state.store.query(
            "SELECT p.* FROM serverless_policies p JOIN instances i ON i.id = p.instance_id "
            "WHERE p.user_id = ? AND i.deleted_at IS NULL",
            (user_id,),
        )
        if user_id is not None
        else []
    )
    now = state.clock.now()
    paused = sum(1 for r in rows if r["status"] in PAUSED)
    return {
        "status": "operational",
        "total_instances": len(rows),
        "active_instances": len(rows) - paused,
        "paused_instances": paused,
        "total_savings_usd": round(sum(savings_of(r, now) for r in rows), 6),
        "available_modes": AVAILABLE_MODES,
        "features": FEATURES,
    }


def _monthly(running: float, idle: float) -> float:
    return round((running * ACTIVE_HOURS + idle * IDLE_HOURS) * DAYS, 2)


def _plan(running: float, idle: float, always_on_dph: float | None = None) -> dict[str, Any]:
    """A month at `running` $/h active and `idle` $/h paused, against always on."""
    always = (running if always_on_dph is None else always_on_dph) * 24 * DAYS
    cost = _monthly(running, idle)
    saved = round(always - cost, 2)
    percent = round(saved / always * 100, 1) if always else 0.0
    return {"cost_usd": cost, "savings_usd": saved, "savings_percent": percent}


def pricing(state: AppState, user_id: int | None) -> dict[str, Any]:
    """§7.2's static model, plus (additive) each mode's idle rate and, with a token, the
    per-mode figures of the caller's instances at the market's current prices."""
    answer: dict[str, Any] = {
        "assumptions": {
            "gpu_hourly_rate_usd": GPU_RATE,
            "active_hours_per_day": ACTIVE_HOURS,
            "idle_hours_per_day": IDLE_HOURS,
            "days_per_month": DAYS,
        },
        "monthly_costs": {
            "always_on": {"cost_usd": round(GPU_RATE * 24 * DAYS, 2)},
            "serverless_fast": _plan(GPU_RATE, IDLE_DPH["fast"]) | {"recovery_time": "<1s"},
            "serverless_economic": _plan(GPU_RATE, IDLE_DPH["economic"]) | {"recovery_time": "~7s"},
        },
        "recommendation": "economic",
        "note": "Static model; `instances` has your instances' figures at current market prices.",
        "modes": {m: {"idle_dph": IDLE_DPH[m], "recovery_time": RECOVERY[m]} for m in MODES},
    }
    if user_id is None:
        return answer
    now = time.time()
    instances = []
    rows = state.store.query(
        "SELECT i.id, i.offer_id, i.gpu_name, i.use_spot, p.mode FROM instances i "
        "LEFT JOIN serverless_policies p ON p.instance_id = i.id "
        "WHERE i.user_id = ? AND i.deleted_at IS NULL ORDER BY i.id",
        (user_id,),
    )
    for row in rows:
        machine = market_of(state).by_offer(int(row["offer_id"]))
        if machine is None:
            continue
        running = machine.price(bool(row["use_spot"]), now)
        spot = machine.min_bid(now)
        rates = {"fast": running, "economic": running, "spot": spot}
        instances.append(
            {
                "instance_id": int(row["id"]),
                "gpu_name": row["gpu_name"],
                "running_dph": running,
                "always_on_monthly_usd": round(running * 24 * DAYS, 2),
                "serverless_mode": row["mode"],
                "modes": {
                    m: {"running_dph": rates[m], "idle_dph": IDLE_DPH[m]}
                    | _plan(rates[m], IDLE_DPH[m], running)
                    for m in MODES
                },
            }
        )
    answer["instances"] = instances
    return answer
