"""Spot deployments in motion: renting, interruptions, failover, workspace sync, the pass.

States (contract §8.2): `active` (watched) -> `interrupted` (its machine was lost) ->
`failover` (renting another) -> `active` under the new instance id | `failed` (with the
reason); `stopped` is out of the loop. One reconciler pass (`reconcile_spot`) carries a
deployment through the whole chain: it detects the loss, rents the cheapest spot offer that
fits, restores the deployment's last synced snapshot into the new workspace, and records it.

An interruption is what a real preemption is: the machine is taken away. Its processes are
killed at once (SIGKILL to the whole tree, no SIGTERM first), the instance is deleted with
`reason=spot_interruption`, its workspace is gone, and the user's machine history records a
failed attempt at stage `interrupted`. What was written since the last sync is lost
(`work_lost_seconds`). Causes: the machine's spot price rose above the bid (spot_market.py),
the instance stopped or vanished, or an operator's `POST /spot/interrupt/{id}`.

While a deployment is active its workspace folder is archived to the deployment's snapshot
every `sync_interval` seconds (0: every pass); a workspace unchanged since the last archive
(same names, sizes and modification times, the newest over 2 s old) is not archived again.
Time to recover: from the interruption to the pass that first sees the new instance running
(boot included).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

from dumont_plan.errors import InstanceError, SpotError
from dumont_plan.server.context import AppState
from dumont_plan.server.provider import instance_processes, snapshots
from dumont_plan.server.provider.history import LOCAL_PROVIDER, Attempt, record_attempt
from dumont_plan.server.provider.instances import (
    CreateParams,
    advance,
    create_instance,
    delete_instance,
    market_of,
    sandbox_of,
)
from dumont_plan.server.provider.sandbox import kill_tagged
from dumont_plan.server.provider.spot_market import SpotChoice, choose_offer, outbid, overrides
from dumont_plan.server.provider.spot_market import spot_price as current_spot_price

LIVE_STATES = ("active", "interrupted", "failover")
# A workspace whose newest change is older than this is not archived again while unchanged.
SETTLED_SECONDS = 2.0
RENT_TRIES = 3

# Deployment id -> (instance id, workspace fingerprint) of its last archive in this process.
_SYNCED: dict[str, tuple[int, str]] = {}
_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def lock(deployment_id: str) -> threading.RLock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(deployment_id, threading.RLock())


def snapshot_file(state: AppState, relative: str) -> Path:
    return state.settings.data_dir / relative


def deployment_row(state: AppState, deployment_id: str) -> sqlite3.Row | None:
    return state.store.query_one(
        "SELECT * FROM spot_deployments WHERE id = ? AND deleted_at IS NULL", (deployment_id,)
    )


def instance_row(state: AppState, instance_id: int) -> sqlite3.Row | None:
    return state.store.query_one("SELECT * FROM instances WHERE id = ?", (instance_id,))


def no_offer_message(region: str, max_price: float, gpu: str | None) -> str:
    what = f" {gpu}" if gpu else ""
    return (
        f"No spot{what} offers available in {region} for max ${max_price:g}/hr; "
        "raise max_price, choose another GPU or try later"
    )


def rent(
    state: AppState,
    user_id: int,
    deployment: dict[str, Any],
    exclude_machines: tuple[str, ...] = (),
) -> tuple[dict[str, Any], SpotChoice]:
    """Rent the cheapest fitting spot offer for `deployment` (its region, gpu_preference,
    max_price, image, disk_size, onstart_cmd, template_id); SpotError when none fits."""
    for _ in range(RENT_TRIES):
        choice = choose_offer(
            state,
            user_id,
            region=str(deployment["region"]),
            gpu=deployment["gpu_preference"],
            max_price=float(deployment["max_price"]),
            exclude_machines=exclude_machines,
        )
        if choice is None:
            break
        params = CreateParams(
            offer_id=choice.machine.offer_id,
            image=str(deployment["image"]),
            disk_size=min(float(deployment["disk_size"]), choice.machine.disk_space),
            label=f"spot_{deployment['template_id']}",
            onstart_cmd=deployment["onstart_cmd"],
            use_spot=True,
        )
        try:
            return create_instance(state, user_id, params), choice
        except InstanceError as exc:
            if exc.status == 429:
                raise SpotError(429, exc.message) from exc
            continue  # rented by someone else meanwhile: choose again
    raise SpotError(
        400,
        no_offer_message(
            str(deployment["region"]), float(deployment["max_price"]), deployment["gpu_preference"]
        ),
    )


def restore_into(state: AppState, instance_id: int, snapshot: Path, workspace_path: str) -> bool:
    return snapshots.restore(snapshot, sandbox_of(state, instance_id).workspace, workspace_path)


def kill_now(row: sqlite3.Row) -> None:
    """SIGKILL every process of the instance at once, as a machine taken away would."""
    pid = row["pid"]
    leader = instance_processes.Leader(int(row["id"]), int(pid) if pid else None, row["pid_start"])
    if leader.pid and leader.alive():
        with contextlib.suppress(OSError):
            os.killpg(leader.pid, signal.SIGKILL)
    kill_tagged(instance_processes.tag_of(leader.instance_id), (leader.pid,))
    instance_processes.reap(leader.instance_id, wait=1.0)


def _event(conn: sqlite3.Connection, dep: sqlite3.Row, kind: str, at: float, **fields: Any) -> None:
    columns = ["user_id", "deployment_id", "kind", "at", *fields]
    values = [int(dep["user_id"]), str(dep["id"]), kind, at, *fields.values()]
    conn.execute(
        f"INSERT INTO spot_events ({', '.join(columns)}) VALUES ({', '.join('?' * len(values))})",
        values,
    )


def interrupt(state: AppState, dep: sqlite3.Row, reason: str, now: float) -> None:
    """Take the deployment's machine away (see the module doc); state `interrupted`."""
    user_id = int(dep["user_id"])
    row = instance_row(state, int(dep["instance_id"]))
    live = row is not None and row["deleted_at"] is None
    if live and row is not None:
        kill_now(row)
        with contextlib.suppress(InstanceError):
            delete_instance(state, user_id, int(row["id"]), "spot_interruption")
    synced = dep["last_sync_at"] if dep["last_sync_at"] is not None else dep["created_at"]
    pending = dep["interrupted_at"] is not None and dep["recovered_at"] is None
    with state.store.tx() as conn:
        if live and row is not None:
            machine = market_of(state).by_offer(int(row["offer_id"]))
            record_attempt(
                conn,
                user_id,
                Attempt(
                    provider=LOCAL_PROVIDER,
                    machine_id=str(row["machine_id"]),
                    success=False,
                    offer_id=str(row["offer_id"]),
                    gpu_name=str(row["gpu_name"]),
                    price_per_hour=machine.min_bid(now) if machine else None,
                    instance_id=str(row["id"]),
                    failure_stage="interrupted",
                    failure_reason=reason,
                ),
                now,
            )
        _event(
            conn,
            dep,
            "interruption",
            now,
            instance_id=int(dep["instance_id"]),
            machine_id=str(row["machine_id"]) if row is not None else None,
            gpu_name=str(row["gpu_name"]) if row is not None else None,
            reason=reason,
            work_lost_seconds=round(max(0.0, now - float(synced)), 3),
        )
        conn.execute(
            "UPDATE spot_deployments SET state = 'interrupted', reason = ?, "
            "interrupted_at = ?, recovered_at = NULL WHERE id = ?",
            (reason, dep["interrupted_at"] if pending else now, dep["id"]),
        )


def fail_over(state: AppState, dep: sqlite3.Row, now: float, *, manual: bool = False) -> int:
    """Rent another machine for `dep`, restore its snapshot there, make it the deployment's
    instance; return the new instance id. Automatic (after an interruption): on no fitting
    offer the deployment is `failed` with the reason. Manual: the old instance is deleted
    after the new one exists, and on no offer nothing changes (SpotError 400)."""
    user_id = int(dep["user_id"])
    old_id = int(dep["instance_id"])
    old = instance_row(state, old_id)
    exclude = (str(old["machine_id"]),) if old is not None else ()
    if not manual:
        state.store.execute(
            "UPDATE spot_deployments SET state = 'failover' WHERE id = ?", (dep["id"],)
        )
    try:
        created, choice = rent(state, user_id, dict(dep), exclude)
    except SpotError as exc:
        if manual:
            raise
        with state.store.tx() as conn:
            conn.execute(
                "UPDATE spot_deployments SET state = 'failed', reason = ? WHERE id = ?",
                (exc.message, dep["id"]),
            )
            _event(conn, dep, "failover_failed", now, instance_id=old_id, reason=exc.message)
        return old_id
    new_id = int(created["id"])
    snapshot = snapshot_file(state, str(dep["snapshot"]))
    restored = restore_into(state, new_id, snapshot, str(dep["workspace_path"]))
    if manual and old is not None and old["deleted_at"] is None:
        with contextlib.suppress(InstanceError):
            delete_instance(state, user_id, old_id, "user_request")
    at = time.time()
    with state.store.tx() as conn:
        conn.execute(
            "UPDATE spot_deployments SET state = 'active', instance_id = ?, bid_price = ?, "
            "snapshot_restored = ?, failover_count = failover_count + 1, "
            "last_failover_at = ?, reason = NULL, "
            "interrupted_at = CASE WHEN ? THEN ? ELSE interrupted_at END, "
            "recovered_at = NULL WHERE id = ?",
            (new_id, choice.bid, int(restored), at, int(manual), now, dep["id"]),
        )
        conn.execute(
            "INSERT INTO spot_instances (instance_id, deployment_id, user_id, started_at) "
            "VALUES (?, ?, ?, ?)",
            (new_id, dep["id"], user_id, at),
        )
        _event(
            conn,
            dep,
            "failover",
            at,
            instance_id=old_id,
            new_instance_id=new_id,
            machine_id=choice.machine.machine_id,
            gpu_name=choice.machine.gpu_name,
            reason="manual failover" if manual else dep["reason"],
        )
    return new_id


def sync(state: AppState, dep: sqlite3.Row, now: float) -> bool:
    """Archive the running instance's workspace folder to the deployment's snapshot; when
    nothing changed since this process last archived it, the snapshot is already current."""
    row = instance_row(state, int(dep["instance_id"]))
    if row is None or row["deleted_at"] is not None or row["actual_status"] != "running":
        return False
    workspace = sandbox_of(state, int(row["id"])).workspace
    path = str(dep["workspace_path"])
    target = snapshot_file(state, str(dep["snapshot"]))
    try:
        digest, newest = snapshots.fingerprint(workspace, path)
        seen = (int(row["id"]), digest)
        if _SYNCED.get(str(dep["id"])) != seen or not target.is_file():
            _SYNCED.pop(str(dep["id"]), None)
            snapshots.take(workspace, path, target)
            if newest < time.time() - SETTLED_SECONDS:
                _SYNCED[str(dep["id"])] = seen
    except (OSError, tarfile.TarError):  # a file changed under the archiver: next time
        return False
    state.store.execute(
        "UPDATE spot_deployments SET last_sync_at = ? WHERE id = ?", (now, dep["id"])
    )
    return True


def lost_reason(
    state: AppState, dep: sqlite3.Row, now: float, forced: dict[int, float]
) -> str | None:
    """Why the deployment's machine is lost, or None while it is fine."""
    instance_id = int(dep["instance_id"])
    advance(state, instance_id, now)
    row = instance_row(state, instance_id)
    if row is None or row["deleted_at"] is not None:
        return f"instance {instance_id} is gone"
    if row["status"] == "error" or row["actual_status"] in ("exited", "offline", "error"):
        return f"the machine stopped: {row['status_msg'] or row['actual_status']}"
    machine = market_of(state).by_offer(int(row["offer_id"]))
    # Only a machine in use can be outbid (a paused instance holds no bid).
    if machine is not None and row["actual_status"] in ("loading", "running"):
        price = current_spot_price(machine, now, forced)
        if outbid(float(dep["bid_price"]), price):
            return (
                f"outbid: the spot price rose to ${price:.4f}/h, above the bid "
                f"${float(dep['bid_price']):.4f}/h"
            )
    return None


def _recovered(state: AppState, dep: sqlite3.Row, now: float) -> None:
    if dep["interrupted_at"] is None or dep["recovered_at"] is not None:
        return
    row = instance_row(state, int(dep["instance_id"]))
    if row is None or row["actual_status"] != "running":
        return
    seconds = round(now - float(dep["interrupted_at"]), 3)
    with state.store.tx() as conn:
        conn.execute(
            "UPDATE spot_deployments SET recovered_at = ?, last_recover_seconds = ? WHERE id = ?",
            (now, seconds, dep["id"]),
        )
        conn.execute(
            "UPDATE spot_events SET time_to_recover_seconds = ? WHERE id = (SELECT MAX(id) "
            "FROM spot_events WHERE deployment_id = ? AND kind = 'failover')",
            (seconds, dep["id"]),
        )


def step(state: AppState, deployment_id: str, forced: dict[int, float]) -> None:
    """One deployment's part of a pass (under its lock)."""
    with lock(deployment_id):
        dep = deployment_row(state, deployment_id)
        if dep is None or dep["state"] not in LIVE_STATES:
            return
        now = time.time()
        if dep["state"] == "active":
            reason = lost_reason(state, dep, now, forced)
            if reason is None:
                _recovered(state, dep, now)
                fresh = deployment_row(state, deployment_id)
                last = fresh["last_sync_at"] if fresh is not None else None
                if fresh is not None and (
                    last is None or now - float(last) >= float(fresh["sync_interval"])
                ):
                    sync(state, fresh, now)
                return
            interrupt(state, dep, reason, now)
            dep = deployment_row(state, deployment_id)
        if dep is not None and dep["auto_failover"]:
            fail_over(state, dep, now)


def reconcile_spot(state: AppState) -> None:
    """The reconciler's spot pass: every live deployment, watched, synced or failed over."""
    rows = state.store.query(
        "SELECT id FROM spot_deployments WHERE deleted_at IS NULL "
        "AND state IN ('active', 'interrupted', 'failover') ORDER BY created_at"
    )
    if not rows:
        return
    forced = overrides(state, time.time())
    for r in rows:
        step(state, str(r["id"]), forced)
