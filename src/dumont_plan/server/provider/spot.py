"""Spot mode (contract §8): templates and deployments of one user.

A *template* is a real snapshot of an instance's workspace folder (a tar file under
`<data_dir>/spot/<user_id>/templates/`), with what a new machine needs to run the same thing
(image, disk size, `onstart_cmd`) and the region it came from. Deleting one removes its
snapshot too.

A *deployment* (`POST /spot/deploy`) rents the cheapest fitting spot offer at its minimum bid,
restores the template's snapshot into the new workspace (`snapshot_restored` says whether it
was), answers once the machine has booted (with its ssh host and port) and is then watched
by the reconciler (spot_failover.py). It has a snapshot of its own, started as a copy of the
template's and refreshed by every sync, so a failover restores the last synced state and
deleting the template does not affect it. The routes address a
deployment by its current instance id, or by any instance id it had before (a client that
knew it before a failover still finds it; the answer names the current one).

Unlike the real platform: every template and deployment belongs to one user (404 for
another's); a manual failover returns the new instance id and deletes the old instance;
deleting a deployment also destroys its instance and its snapshot.
"""

from __future__ import annotations

import secrets
import sqlite3
import tarfile
import time
from dataclasses import dataclass
from typing import Any

from dumont_plan.errors import InstanceError, SpotError
from dumont_plan.server.context import AppState
from dumont_plan.server.provider import snapshots
from dumont_plan.server.provider.history import iso
from dumont_plan.server.provider.instances import (
    delete_instance,
    get_instance,
    instance_json,
    market_of,
    sandbox_of,
)
from dumont_plan.server.provider.jobs import time_scale
from dumont_plan.server.provider.spot_failover import (
    deployment_row,
    fail_over,
    instance_row,
    interrupt,
    lock,
    rent,
    restore_into,
    snapshot_file,
    sync,
)
from dumont_plan.server.provider.spot_market import overrides, spot_price

BOOT_SLACK_SECONDS = 1.0
BOOT_POLL_SECONDS = 0.05


def _user_dir(user_id: int) -> str:
    return f"spot/{user_id}"


# ---------------------------------------------------------------------------- templates


def template_json(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "template_id": row["id"],
        "instance_id": int(row["instance_id"]),
        "region": row["region"],
        "gpu_name": row["gpu_name"],
        "created_at": iso(float(row["created_at"])),
        "workspace_path": row["workspace_path"],
        "size_bytes": int(row["size_bytes"]),
        "snapshot_path": row["snapshot"],
        "image": row["image"],
    }


def create_template(
    state: AppState, user_id: int, instance_id: int, region: str | None, workspace_path: str
) -> dict[str, Any]:
    """Snapshot the workspace folder of the user's instance `instance_id`."""
    try:
        instance = get_instance(state, user_id, instance_id)
    except InstanceError as exc:
        raise SpotError(exc.status, exc.message) from exc
    now = time.time()
    stamp = int(now)
    while state.store.query_one(
        "SELECT 1 FROM spot_templates WHERE id = ?", (f"spot_tpl_{instance_id}_{stamp}",)
    ):
        stamp += 1
    template_id = f"spot_tpl_{instance_id}_{stamp}"
    relative = f"{_user_dir(user_id)}/templates/{template_id}.tar"
    workspace = sandbox_of(state, instance_id).workspace
    try:
        size = snapshots.take(workspace, workspace_path, snapshot_file(state, relative))
    except (OSError, tarfile.TarError) as exc:  # the workload changed a file meanwhile
        raise SpotError(
            409, f"the workspace of instance {instance_id} changed while it was archived; retry"
        ) from exc
    chosen = (region or "").strip() or str(instance["region"] or "global")
    source = instance_row(state, instance_id)
    state.store.execute(
        "INSERT INTO spot_templates (id, user_id, instance_id, region, gpu_name, num_gpus, "
        "workspace_path, image, disk_size, onstart_cmd, size_bytes, snapshot, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            template_id,
            user_id,
            instance_id,
            chosen,
            instance["gpu_name"],
            instance["num_gpus"],
            workspace_path,
            instance["image"],
            instance["disk_space"],
            source["onstart_cmd"] if source is not None else None,
            size,
            relative,
            now,
        ),
    )
    return {
        "template_id": template_id,
        "region": chosen,
        "gpu_name": instance["gpu_name"],
        "size_bytes": size,
        "snapshot_path": relative,
        "instance_id": instance_id,
        "workspace_path": workspace_path,
        "created_at": iso(now),
    }


def _template(state: AppState, user_id: int, template_id: str) -> sqlite3.Row:
    row = state.store.query_one(
        "SELECT * FROM spot_templates WHERE id = ? AND user_id = ?", (template_id, user_id)
    )
    if row is None:
        raise SpotError(
            404, f"Template {template_id} not found; list yours with GET /spot/templates"
        )
    return row


def list_templates(state: AppState, user_id: int) -> list[dict[str, Any]]:
    rows = state.store.query(
        "SELECT * FROM spot_templates WHERE user_id = ? ORDER BY created_at, id", (user_id,)
    )
    return [template_json(r) for r in rows]


def delete_template(state: AppState, user_id: int, template_id: str) -> dict[str, Any]:
    row = _template(state, user_id, template_id)
    state.store.execute("DELETE FROM spot_templates WHERE id = ?", (template_id,))
    snapshots.remove(snapshot_file(state, str(row["snapshot"])))
    return {"status": "deleted", "template_id": template_id, "snapshot_deleted": True}


# ---------------------------------------------------------------------------- deployments


@dataclass(frozen=True)
class DeployParams:
    template_id: str
    max_price: float = 1.0
    gpu_preference: str | None = None
    auto_failover: bool = True
    sync_interval: float = 30.0


def deploy(state: AppState, user_id: int, params: DeployParams) -> dict[str, Any]:
    """Rent a spot machine for the template and restore its snapshot there."""
    tpl = _template(state, user_id, params.template_id)
    deployment_id = f"spot_dep_{secrets.token_hex(4)}"
    plan = {
        "region": tpl["region"],
        "gpu_preference": params.gpu_preference,
        "max_price": params.max_price,
        "image": tpl["image"],
        "disk_size": tpl["disk_size"],
        "onstart_cmd": tpl["onstart_cmd"],
        "template_id": tpl["id"],
    }
    created, choice = rent(state, user_id, plan)
    instance_id = int(created["id"])
    relative = f"{_user_dir(user_id)}/deployments/{deployment_id}.tar"
    try:
        snapshots.copy(snapshot_file(state, str(tpl["snapshot"])), snapshot_file(state, relative))
    except OSError:  # the template's snapshot is gone (removed by hand): nothing to restore
        restored = False
    else:
        restored = restore_into(
            state, instance_id, snapshot_file(state, relative), str(tpl["workspace_path"])
        )
    now = time.time()
    with state.store.tx() as conn:
        conn.execute(
            "INSERT INTO spot_deployments (id, user_id, template_id, instance_id, state, region, "
            "gpu_preference, workspace_path, image, disk_size, onstart_cmd, max_price, "
            "bid_price, auto_failover, sync_interval, snapshot, snapshot_restored, created_at) "
            "VALUES (?, ?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                deployment_id,
                user_id,
                tpl["id"],
                instance_id,
                tpl["region"],
                params.gpu_preference,
                tpl["workspace_path"],
                tpl["image"],
                tpl["disk_size"],
                tpl["onstart_cmd"],
                params.max_price,
                choice.bid,
                int(params.auto_failover),
                params.sync_interval,
                relative,
                int(restored),
                now,
            ),
        )
        conn.execute(
            "INSERT INTO spot_instances (instance_id, deployment_id, user_id, started_at) "
            "VALUES (?, ?, ?, ?)",
            (instance_id, deployment_id, user_id, now),
        )
    booted = _wait_boot(state, user_id, created, choice.machine.boot_seconds)
    return {
        "instance_id": instance_id,
        "gpu_name": choice.machine.gpu_name,
        "bid_price": choice.bid,
        "ssh_host": booted["ssh_host"],
        "ssh_port": booted["ssh_port"],
        "region": tpl["region"],
        "template_id": tpl["id"],
        "snapshot_restored": restored,
        "deployment_id": deployment_id,
        "state": "active",
        "machine_id": choice.machine.machine_id,
        "geolocation": choice.machine.geolocation,
        "max_price": params.max_price,
        "auto_failover": params.auto_failover,
        "sync_interval_seconds": params.sync_interval,
        "instance_status": booted["actual_status"],
    }


def _live(state: AppState, deployment_id: str) -> sqlite3.Row:
    """The deployment, still there (a concurrent delete may have removed it)."""
    row = deployment_row(state, deployment_id)
    if row is None:
        raise SpotError(404, f"Spot deployment {deployment_id} was deleted meanwhile")
    return row


def _wait_boot(
    state: AppState, user_id: int, created: dict[str, Any], boot_seconds: float
) -> dict[str, Any]:
    """The new instance once its boot is over (the real platform waits for SSH the same way),
    at most its boot time plus BOOT_SLACK_SECONDS; as it is then, or `created` if it is gone."""
    deadline = time.monotonic() + boot_seconds / time_scale(state) + BOOT_SLACK_SECONDS
    view = created
    while view["actual_status"] == "loading" and time.monotonic() < deadline:
        time.sleep(BOOT_POLL_SECONDS)
        try:
            view = get_instance(state, user_id, int(created["id"]))
        except InstanceError:
            return created
    return view


def _find(state: AppState, user_id: int, instance_id: int) -> sqlite3.Row:
    """The user's live deployment that has or had instance `instance_id`."""
    row = state.store.query_one(
        "SELECT d.* FROM spot_deployments d JOIN spot_instances i ON i.deployment_id = d.id "
        "WHERE i.instance_id = ? AND d.user_id = ? AND d.deleted_at IS NULL",
        (instance_id, user_id),
    )
    if row is None:
        raise SpotError(404, f"Instance {instance_id} not configured for spot")
    return row


def status_json(state: AppState, dep: sqlite3.Row, now: float | None = None) -> dict[str, Any]:
    at = time.time() if now is None else now
    instance_id = int(dep["instance_id"])
    row = instance_row(state, instance_id)
    live = row is not None and row["deleted_at"] is None
    view = instance_json(state, row, at) if live and row is not None else None
    machine = market_of(state).by_offer(int(row["offer_id"])) if row is not None else None
    previous = state.store.query(
        "SELECT instance_id FROM spot_instances WHERE deployment_id = ? AND instance_id != ? "
        "ORDER BY started_at",
        (dep["id"], instance_id),
    )
    cost = state.store.query(
        "SELECT COALESCE(SUM(cost), 0) AS c FROM instances WHERE id IN "
        "(SELECT instance_id FROM spot_instances WHERE deployment_id = ?) AND id != ?",
        (dep["id"], instance_id),
    )[0]
    last_sync = dep["last_sync_at"]
    return {
        "instance_id": instance_id,
        "state": dep["state"],
        "template_id": dep["template_id"],
        "region": dep["region"],
        "bid_price": float(dep["bid_price"]),
        "max_price": float(dep["max_price"]),
        "auto_failover": bool(dep["auto_failover"]),
        "failover_count": int(dep["failover_count"]),
        "last_failover_at": iso(dep["last_failover_at"]),
        "ssh_host": view["ssh_host"] if view else None,
        "ssh_port": view["ssh_port"] if view else None,
        # Additive fields.
        "deployment_id": dep["id"],
        "gpu_name": row["gpu_name"] if row is not None else None,
        "gpu_preference": dep["gpu_preference"],
        "machine_id": row["machine_id"] if row is not None else None,
        "instance_status": view["actual_status"] if view else None,
        "spot_price": spot_price(machine, at, overrides(state, at)) if machine else None,
        "snapshot_restored": bool(dep["snapshot_restored"]),
        "workspace_path": dep["workspace_path"],
        "sync_interval_seconds": float(dep["sync_interval"]),
        "last_sync_at": iso(last_sync),
        "seconds_since_sync": None if last_sync is None else round(at - float(last_sync), 3),
        "last_interruption_at": iso(dep["interrupted_at"]),
        "last_recover_seconds": dep["last_recover_seconds"],
        "reason": dep["reason"],
        "previous_instance_ids": [int(r["instance_id"]) for r in previous],
        "total_cost": round(float(cost["c"]) + (view["total_cost"] if view else 0.0), 6),
        "created_at": iso(float(dep["created_at"])),
    }


def get_status(state: AppState, user_id: int, instance_id: int) -> dict[str, Any]:
    return status_json(state, _find(state, user_id, instance_id))


def list_deployments(state: AppState, user_id: int) -> list[dict[str, Any]]:
    rows = state.store.query(
        "SELECT * FROM spot_deployments WHERE user_id = ? AND deleted_at IS NULL "
        "ORDER BY created_at, id",
        (user_id,),
    )
    now = time.time()
    return [status_json(state, r, now) for r in rows]


def manual_failover(state: AppState, user_id: int, instance_id: int) -> dict[str, Any]:
    """Move the deployment to another machine now: sync, rent, restore, delete the old one."""
    found = _find(state, user_id, instance_id)
    with lock(str(found["id"])):
        dep = _live(state, str(found["id"]))
        old_id = int(dep["instance_id"])
        now = time.time()
        synced = sync(state, dep, now)
        dep = _live(state, str(dep["id"]))
        new_id = fail_over(state, dep, now, manual=True)
        after = _live(state, str(dep["id"]))
    return {
        "status": "failover_completed",
        "instance_id": new_id,
        "old_instance_id": old_id,
        "new_instance_id": new_id,
        "deployment_id": dep["id"],
        "synced_before_failover": synced,
        "snapshot_restored": bool(after["snapshot_restored"]),
        "failover_count": int(after["failover_count"]),
    }


def operator_interrupt(state: AppState, user_id: int, instance_id: int) -> dict[str, Any]:
    """Interrupt the deployment's machine now (chaos testing); the next pass fails over."""
    found = _find(state, user_id, instance_id)
    with lock(str(found["id"])):
        dep = _live(state, str(found["id"]))
        if dep["state"] != "active":
            raise SpotError(
                409,
                f"spot instance {instance_id} is {dep['state']}, not active: nothing to interrupt",
            )
        current = int(dep["instance_id"])
        interrupt(state, dep, "interrupted by the operator", time.time())
    return {
        "status": "interrupted",
        "instance_id": current,
        "deployment_id": dep["id"],
        "auto_failover": bool(dep["auto_failover"]),
    }


def sync_now(state: AppState, user_id: int, instance_id: int) -> dict[str, Any]:
    found = _find(state, user_id, instance_id)
    with lock(str(found["id"])):
        dep = _live(state, str(found["id"]))
        if dep["state"] != "active" or not sync(state, dep, time.time()):
            raise SpotError(
                409, f"spot instance {instance_id} is not running: its workspace cannot be synced"
            )
        after = _live(state, str(dep["id"]))
    size = snapshot_file(state, str(after["snapshot"])).stat().st_size
    return {
        "status": "synced",
        "instance_id": int(after["instance_id"]),
        "last_sync_at": iso(after["last_sync_at"]),
        "size_bytes": size,
    }


def stop(state: AppState, user_id: int, instance_id: int) -> dict[str, Any]:
    """Stop watching the deployment (no sync, no failover); its instance keeps running."""
    found = _find(state, user_id, instance_id)
    with lock(str(found["id"])):
        state.store.execute(
            "UPDATE spot_deployments SET state = 'stopped', auto_failover = 0 WHERE id = ?",
            (found["id"],),
        )
    return {"status": "stopped", "instance_id": int(found["instance_id"])}


def remove(state: AppState, user_id: int, instance_id: int) -> dict[str, Any]:
    """Delete the deployment, its snapshot and its instance."""
    found = _find(state, user_id, instance_id)
    with lock(str(found["id"])):
        current = int(found["instance_id"])
        row = instance_row(state, current)
        destroyed = False
        if row is not None and row["deleted_at"] is None:
            try:
                delete_instance(state, user_id, current, "user_request")
                destroyed = True
            except InstanceError:
                destroyed = False
        state.store.execute(
            "UPDATE spot_deployments SET deleted_at = ?, state = 'deleted' WHERE id = ?",
            (time.time(), found["id"]),
        )
        snapshots.remove(snapshot_file(state, str(found["snapshot"])))
    return {"status": "removed", "instance_id": current, "instance_destroyed": destroyed}
