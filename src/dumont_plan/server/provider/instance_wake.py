"""`POST /instances/{id}/wake` (contract §3.4): a hibernated instance woken on a new machine.

A paused (`stopped`) instance is hibernated here: its disk is its sandbox's workspace. A wake
snapshots that workspace (`snapshots.take`, under `<data>/snapshots/wake/<user>/`), rents
the cheapest fitting on-demand offer (the instance's GPU model unless `gpu_type`, `region` when
given, at most `max_price` $/h, the same GPU count, not rented, not on the user's blacklist),
restores the snapshot into the new instance's workspace before it boots (`restore_snapshot`),
removes the snapshot, then deletes the old instance. The new instance boots and runs the same
`onstart_cmd`.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from dumont_plan.errors import InstanceError
from dumont_plan.server.context import AppState
from dumont_plan.server.provider import history, snapshots
from dumont_plan.server.provider.instances import (
    LOCALHOST,
    CreateParams,
    create_instance,
    delete_instance,
    get_instance,
    market_of,
    rented_offer_ids,
    sandbox_of,
)
from dumont_plan.server.provider.market import Machine
from dumont_plan.server.provider.regions import expand_region, region_matches
from dumont_plan.server.store import loads

WORKSPACE = "/workspace"


@dataclass(frozen=True)
class WakeParams:
    gpu_type: str | None = None
    region: str | None = None
    max_price: float = 1.0
    restore_snapshot: bool = True


def _choose(
    state: AppState, user_id: int, gpu: str, num_gpus: int, params: WakeParams
) -> Machine | None:
    now = time.time()
    rented = rented_offer_ids(state)
    banned = {
        machine_id
        for machine_id, note in history.offer_annotations(
            history.store_query(state.store), user_id
        ).items()
        if note.is_blacklisted
    }
    patterns = expand_region(params.region) if params.region else None
    fitting = [
        m
        for m in market_of(state).machines
        if m.offer_id not in rented
        and m.machine_id not in banned
        and m.num_gpus == num_gpus
        and m.gpu_name.lower() == gpu.lower()
        and m.failure_probability == 0
        and m.dph(now) <= params.max_price
        and (patterns is None or region_matches(patterns, m.geolocation))
    ]
    return min(fitting, key=lambda m: (m.dph(now), m.offer_id), default=None)


def wake_instance(
    state: AppState, user_id: int, instance_id: int, params: WakeParams
) -> dict[str, Any]:
    started = time.monotonic()
    old = get_instance(state, user_id, instance_id)  # 404 for another's
    if old["actual_status"] != "stopped":
        raise InstanceError(
            409,
            f"Instance {instance_id} is not hibernated (status {old['actual_status']}): wake "
            "moves a paused instance to a new machine; pause it first",
        )
    row = state.store.query_one("SELECT * FROM instances WHERE id = ?", (instance_id,))
    if row is None:
        raise InstanceError(404, f"Instance {instance_id} not found")
    gpu = params.gpu_type or str(row["gpu_name"])
    machine = _choose(state, user_id, gpu, int(row["num_gpus"]), params)
    if machine is None:
        where = f" in {params.region}" if params.region else ""
        raise InstanceError(
            409,
            f"No free {gpu} offer{where} at or under ${params.max_price:g}/h to wake instance "
            f"{instance_id} on; raise max_price, choose another gpu_type or region, or try later",
        )
    snapshot_id: str | None = None
    snapshot = None
    if params.restore_snapshot:
        snapshot_id = f"wake-{instance_id}-{secrets.token_hex(4)}"
        snapshot = state.settings.data_dir / "snapshots" / "wake" / str(user_id)
        snapshot = snapshot / f"{snapshot_id}.tar"
        snapshots.take(sandbox_of(state, instance_id).workspace, WORKSPACE, snapshot)
    try:
        created = create_instance(
            state,
            user_id,
            CreateParams(
                offer_id=machine.offer_id,
                image=str(row["image"]),
                disk_size=min(float(row["disk_size"]), machine.disk_space),
                label=row["label"],
                ports=tuple(loads(row["ports"], [])),
                onstart_cmd=row["onstart_cmd"],
            ),
        )
        new_id = int(created["id"])
        if snapshot is not None:
            snapshots.restore(snapshot, sandbox_of(state, new_id).workspace, WORKSPACE)
    finally:
        if snapshot is not None:  # it only carries the disk over: kept, each wake adds a copy
            snapshots.remove(snapshot)
    delete_instance(state, user_id, instance_id)
    return {
        "success": True,
        "new_instance_id": new_id,
        "old_instance_id": str(instance_id),
        "snapshot_id": snapshot_id,
        "ssh_host": LOCALHOST,
        "ssh_port": None,
        "time_taken": round(time.monotonic() - started, 3),
        "message": f"Instance {instance_id} woken as {new_id} on machine {machine.machine_id} "
        f"({machine.gpu_name}, ${machine.dph():.4f}/h)",
    }
