"""How each serverless mode pauses and wakes an instance, and what a paused hour saves.

- `fast`: SIGSTOP the process tree (memory kept); wake = SIGCONT, well under a second; idle
  $0.01/h (CPU standby).
- `economic`: stop the processes, keep the disk; wake = a resume boot, then `onstart_cmd`
  again (seconds); idle $0.005/h (storage).
- `spot`: economic, and the machine goes back to the market while paused (anybody may rent
  its offer); wake bids again at the current spot price (spot_market.py, test-hook spikes
  included): the previous machine if free, else the spot deploy's choice (the cheapest stable
  free offer of the same GPU) under the policy's `max_price`; the instance then rents at the
  spot bid; then economic's wake; idle $0.005/h.

Savings of a pause: its paused time on the policy clock x (the instance's running $/h at the
pause, from the market, - the mode's idle $/h). A wake that finds no machine under the
policy's `max_price` leaves the instance paused with status `wake_failed` and the reason.
Transitions run under a per-instance lock (the reconciler's pause and a request's wake never
interleave) and queue webhook events in the transaction that records them.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

from dumont_plan.errors import InstanceError, ServerlessError
from dumont_plan.server.context import AppState
from dumont_plan.server.provider import spot_market, webhooks
from dumont_plan.server.provider.instances import (
    FROZEN_DPH,
    LOCALHOST,
    STORAGE_DPH,
    advance,
    market_of,
    pause_instance,
    rented_offer_ids,
    resume_instance,
)
from dumont_plan.server.provider.market import Machine

MODES = ("fast", "economic", "spot")
IDLE_DPH = {"fast": FROZEN_DPH, "economic": STORAGE_DPH, "spot": STORAGE_DPH}
RECOVERY = {"fast": "<1s", "economic": "~30s", "spot": "~30s"}
WAKE_TIMEOUT_SECONDS = 60.0
PAUSED = ("paused", "wake_failed")

_locks: dict[int, threading.RLock] = {}
_locks_guard = threading.Lock()


def lock(instance_id: int) -> threading.RLock:
    with _locks_guard:
        return _locks.setdefault(instance_id, threading.RLock())


def policy_row(state: AppState, user_id: int, instance_id: int) -> sqlite3.Row:
    row = state.store.query_one(
        "SELECT p.* FROM serverless_policies p JOIN instances i ON i.id = p.instance_id "
        "WHERE p.instance_id = ? AND p.user_id = ? AND i.deleted_at IS NULL",
        (instance_id, user_id),
    )
    if row is None:
        raise ServerlessError(404, f"Instance {instance_id} not configured for serverless")
    return row


def instance_row(state: AppState, instance_id: int) -> sqlite3.Row:
    row = state.store.query_one("SELECT * FROM instances WHERE id = ?", (instance_id,))
    if row is None:
        raise ServerlessError(404, f"Instance {instance_id} not found")
    return row


def savings_of(policy: sqlite3.Row, now: float) -> float:
    """Savings so far: the folded ones plus the open pause's."""
    total = float(policy["savings"])
    if policy["status"] in PAUSED and policy["paused_at"] is not None:
        hours = max(0.0, now - float(policy["paused_at"])) / 3600
        total += hours * float(policy["paused_rate"] or 0.0)
    return total


# ---------------------------------------------------------------------------- pause


def pause(state: AppState, user_id: int, instance_id: int, reason: str) -> bool:
    """Pause one active instance in its policy's mode; False when it was not active/running."""
    with lock(instance_id):
        policy = policy_row(state, user_id, instance_id)
        row = instance_row(state, instance_id)
        if policy["status"] != "active" or row["actual_status"] != "running":
            return False
        mode = str(policy["mode"])
        real_now = time.time()
        machine = market_of(state).by_offer(int(row["offer_id"]))
        running_dph = machine.price(bool(row["use_spot"]), real_now) if machine else 0.0
        pause_instance(state, user_id, instance_id, freeze=mode == "fast")
        frozen = bool(instance_row(state, instance_id)["frozen"])
        idle_dph = FROZEN_DPH if frozen else STORAGE_DPH
        now = state.clock.now()
        with state.store.tx() as conn:
            if mode == "spot":
                conn.execute(
                    "UPDATE instances SET released = 1, status_msg = ? WHERE id = ?",
                    ("paused by serverless spot mode: machine released to the market", instance_id),
                )
            conn.execute(
                "UPDATE serverless_policies SET status = 'paused', paused_mode = ?, paused_at = ?, "
                "paused_rate = ?, idle_since = NULL, inflight = 0, pauses = pauses + 1, "
                "last_wake_error = NULL WHERE instance_id = ?",
                (mode, now, max(0.0, running_dph - idle_dph), instance_id),
            )
            queued = webhooks.enqueue(
                conn,
                policy,
                "paused",
                {
                    "reason": reason,
                    "memory_kept": frozen,
                    "machine_released": mode == "spot",
                    "running_dph": running_dph,
                    "idle_dph": idle_dph,
                },
                now,
            )
        if queued:
            webhooks.sender(state).notify()
        return True


# ---------------------------------------------------------------------------- wake


def _candidates(
    state: AppState, row: sqlite3.Row, max_price: float, now: float
) -> list[tuple[Machine, float]]:
    """(machine, bid) to try for a released instance: its previous machine if free and its spot
    price is under `max_price`, then the cheapest stable free spot offer of the same GPU (the
    spot deploy's choice, spot_market.py; one-GPU machines only)."""
    forced = spot_market.overrides(state, now)
    found: list[tuple[Machine, float]] = []
    previous = market_of(state).by_offer(int(row["offer_id"]))
    if previous is not None and previous.offer_id not in rented_offer_ids(state):
        price = spot_market.spot_price(previous, now, forced)
        if price <= max_price:
            found.append((previous, price))
    if int(row["num_gpus"]) == 1:
        choice = spot_market.choose_offer(
            state,
            int(row["user_id"]),
            region="global",
            gpu=str(row["gpu_name"]),
            max_price=max_price,
            now=now,
        )
        if choice is not None:
            found.append((choice.machine, choice.bid))
    return found


def _rebid(state: AppState, row: sqlite3.Row, max_price: float) -> float:
    """Rent a machine again for a released instance at its current spot price; the bid, or
    ServerlessError 409 with the reason."""
    now = time.time()
    for machine, bid in _candidates(state, row, max_price, now):
        with state.store.tx() as conn:
            taken = conn.execute(
                "SELECT 1 FROM instances WHERE offer_id = ? AND deleted_at IS NULL "
                "AND released = 0",
                (machine.offer_id,),
            ).fetchone()
            if taken is not None:
                continue
            conn.execute(
                "UPDATE instances SET offer_id = ?, machine_id = ?, use_spot = 1, released = 0, "
                "status_msg = NULL WHERE id = ?",
                (machine.offer_id, machine.machine_id, int(row["id"])),
            )
        return bid
    cheapest = market_of(state).cheapest(
        str(row["gpu_name"]), spot=True, num_gpus=int(row["num_gpus"]), now=now
    )
    market = f"; the cheapest bid now is ${cheapest.min_bid(now):.4f}/h" if cheapest else ""
    raise ServerlessError(
        409,
        f"wake failed: no free {row['gpu_name']} machine under the max price "
        f"${max_price:.4f}/h{market}; enable again with a higher max_price or wake later",
    )


def _wait_running(state: AppState, instance_id: int) -> sqlite3.Row:
    deadline = time.monotonic() + WAKE_TIMEOUT_SECONDS
    while True:
        advance(state, instance_id)
        row = instance_row(state, instance_id)
        if row["actual_status"] != "loading":
            return row
        if time.monotonic() > deadline:
            return row
        ready_at = row["ready_at"]
        wait = float(ready_at) - time.time() if ready_at is not None else 0.01
        time.sleep(min(max(wait, 0.002), 0.05))


def _failed(state: AppState, policy: sqlite3.Row, reason: str, trigger: str) -> ServerlessError:
    now = state.clock.now()
    with state.store.tx() as conn:
        conn.execute(
            "UPDATE serverless_policies SET status = 'wake_failed', last_wake_error = ? "
            "WHERE instance_id = ?",
            (reason, int(policy["instance_id"])),
        )
        queued = webhooks.enqueue(
            conn, policy, "wake_failed", {"reason": reason, "trigger": trigger}, now
        )
    if queued:
        webhooks.sender(state).notify()
    return ServerlessError(409, reason)


def wake(state: AppState, user_id: int, instance_id: int, trigger: str = "wake") -> dict[str, Any]:
    """Wake a paused instance and wait until it runs (its cold start is measured)."""
    with lock(instance_id):
        policy = policy_row(state, user_id, instance_id)
        row = instance_row(state, instance_id)
        paused = policy["status"] in PAUSED
        if not paused and row["actual_status"] in ("running", "loading"):
            return {"instance_id": instance_id, "status": "already_running"}
        mode = str(policy["paused_mode"] or policy["mode"])
        started = time.monotonic()
        bid: float | None = None
        if row["released"]:
            max_price = float(policy["max_price"] or 0.0)
            try:
                bid = _rebid(state, row, max_price)
            except ServerlessError as exc:
                raise _failed(state, policy, exc.message, trigger) from None
        frozen = bool(row["frozen"])
        try:
            resume_instance(state, user_id, instance_id)
        except InstanceError as exc:
            raise _failed(state, policy, f"wake failed: {exc.message}", trigger) from None
        # A frozen instance whose processes still live continues at once (no boot).
        thawed = frozen and instance_row(state, instance_id)["actual_status"] == "running"
        row = _wait_running(state, instance_id)
        cold = round(time.monotonic() - started, 3)
        if row["actual_status"] != "running":
            why = row["status_msg"] or f"the instance is {row['actual_status']}"
            raise _failed(state, policy, f"wake failed: {why}", trigger)
        now = state.clock.now()
        saved = savings_of(policy, now)
        with state.store.tx() as conn:
            conn.execute(
                "UPDATE serverless_policies SET status = 'active', paused_mode = NULL, "
                "paused_at = NULL, paused_rate = NULL, savings = ?, idle_since = NULL, "
                "cold_starts = cold_starts + 1, cold_start_total = cold_start_total + ?, "
                "last_wake_error = NULL WHERE instance_id = ?",
                (round(saved, 9), cold, instance_id),
            )
            queued = webhooks.enqueue(
                conn,
                policy,
                "woken",
                {"trigger": trigger, "cold_start_seconds": cold, "memory_kept": thawed},
                now,
            )
        if queued:
            webhooks.sender(state).notify()
        ssh_port = 20000 + instance_id % 40000
        answer: dict[str, Any] = {
            "instance_id": instance_id,
            "status": "resumed",
            "cold_start_seconds": cold,
            "mode": mode,
            "method": "checkpoint" if thawed else "resume",
            "ssh_host": LOCALHOST,
            "ssh_port": ssh_port,
            "checkpoint_restored": thawed,
            # Additive.
            "memory_kept": thawed,
            "total_savings_usd": round(saved, 6),
        }
        if bid is not None:
            answer["bid_price"] = bid
            answer["offer_id"] = int(row["offer_id"])
        return answer
