"""`/api/v1/instances`: offers (public), instances as local sandboxes, the host blacklist view.

Contract §3 and §9.3; behaviour in provider/instances.py and provider/offers.py. Additive:
`use_spot` on create, `reason=race_loser|boot_timeout` on delete, offer fields `min_bid` and
`region`, instance fields `machine_id`, `offer_id`, `region`, `geolocation`, `use_spot`,
`image`, `status_msg`, `total_cost`.

`/instances/blacklist/*` (an in-memory host blacklist on the real platform) is a view of the
caller's machine blacklist (§9.1) for provider `local`: adding puts a `manual` entry for 1 h,
doubling while it is still active (capped at 24 h), like the real TTLs.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from dumont_plan.errors import InstanceError, OfferQueryError
from dumont_plan.server.context import AppState, StateDep, User, UserDep, current_user
from dumont_plan.server.idempotency import KeyClaim, idempotent_create_in_tx
from dumont_plan.server.limits import LIST_MAX, MAX_INT, TEXT_MAX
from dumont_plan.server.provider import history
from dumont_plan.server.provider.instance_exec import MAX_TIMEOUT_SECONDS, exec_in_instance
from dumont_plan.server.provider.instance_wake import WakeParams, wake_instance
from dumont_plan.server.provider.instances import (
    ALWAYS_EXPOSED_PORT,
    DEFAULT_IMAGE,
    CreateParams,
    create_instance,
    delete_instance,
    get_instance,
    list_instances,
    market_of,
    pause_instance,
    rented_offer_ids,
    resume_instance,
)
from dumont_plan.server.provider.offers import OfferQuery, search_offers

ADDITIVE_OFFER_FIELDS = frozenset({"min_bid", "region"})
ADDITIVE_INSTANCE_FIELDS = frozenset({"region", "geolocation"})

router = APIRouter(prefix="/instances", tags=["instances"])
# A float query parameter: NaN and infinities are a 422.
Finite = Annotated[float, Query(allow_inf_nan=False)]

HOST_BLACKLIST_FIRST_SECONDS = 3600
HOST_BLACKLIST_MAX_SECONDS = 24 * 3600


def optional_user(request: Request, state: AppState) -> User | None:
    """The caller when the request carries a valid bearer token, else None (public routes)."""
    if not request.headers.get("Authorization"):
        return None
    try:
        return current_user(request, state)
    except HTTPException:
        return None


SQLITE_INTEGER = range(-(2**63), 2**63)


def _stored_id(instance_id: int) -> int:
    """An id SQLite can hold (no instance has another: 404, not an overflow in the query)."""
    if instance_id not in SQLITE_INTEGER:
        raise InstanceError(404, f"Instance {instance_id} not found")
    return instance_id


def _http(exc: InstanceError) -> HTTPException:
    return HTTPException(exc.status, exc.message)


# ---------------------------------------------------------------------------- offers


@router.get("/offers")
def offers(
    request: Request,
    state: StateDep,
    gpu_name: Annotated[str | None, Query(description="GPU model, e.g. RTX 4090")] = None,
    num_gpus: Annotated[int, Query(ge=0, le=8)] = 1,
    min_gpu_ram: Finite = 0,
    min_cpu_cores: Annotated[int, Query(ge=-MAX_INT, le=MAX_INT)] = 1,
    min_cpu_ram: Finite = 1,
    min_disk: Finite = 50,
    min_inet_down: Finite = 100,
    min_inet_up: Finite = 100,
    max_price: Finite = 10.0,
    min_reliability: Annotated[float, Query(ge=0, le=1, allow_inf_nan=False)] = 0.0,
    region: Annotated[
        str | None, Query(description="US, EU, ASIA, a country/continent/state; a,b = either")
    ] = None,
    verified_only: bool = False,
    static_ip: bool = False,
    cuda_version: Annotated[str | None, Query(description="minimum CUDA version")] = None,
    machine_type: Annotated[
        str | None, Query(description="on-demand, interruptible, bid or all")
    ] = None,
    order_by: Annotated[str, Query(description="field, `-field` for descending")] = "dph_total",
    limit: Annotated[int, Query(ge=0, le=100)] = 50,
    include_blacklisted: bool = False,
) -> dict[str, Any]:
    """Offers of the simulated market; history annotations are the caller's own (if any)."""
    query = OfferQuery(
        gpu_name=gpu_name,
        num_gpus=num_gpus,
        min_gpu_ram=min_gpu_ram,
        min_cpu_cores=min_cpu_cores,
        min_cpu_ram=min_cpu_ram,
        min_disk=min_disk,
        min_inet_down=min_inet_down,
        min_inet_up=min_inet_up,
        max_price=max_price,
        min_reliability=min_reliability,
        region=region,
        verified_only=verified_only,
        static_ip=static_ip,
        cuda_version=cuda_version,
        machine_type=machine_type.strip().lower() if machine_type else None,
        order_by=order_by,
        limit=limit,
        include_blacklisted=include_blacklisted,
    )
    user = optional_user(request, state)
    notes = (
        history.offer_annotations(history.store_query(state.store), user.id)
        if user is not None
        else {}
    )
    try:
        found = search_offers(
            market_of(state),
            query,
            rented=rented_offer_ids(state),
            notes=notes,
            now=time.time(),
        )
    except OfferQueryError as exc:
        raise HTTPException(400, str(exc)) from exc
    if state.settings.real_platform:  # the real offer schema: no `min_bid`, no `region`
        found = [{k: v for k, v in o.items() if k not in ADDITIVE_OFFER_FIELDS} for o in found]
    return {"offers": found, "count": len(found)}


# ---------------------------------------------------------------------------- host blacklist view


def _host_entries(state: AppState, user: User) -> list[dict[str, Any]]:
    now = time.time()
    rows = state.store.query(
        "SELECT * FROM machine_blacklist WHERE user_id = ? AND provider = ? "
        "AND (expires_at IS NULL OR expires_at > ?) ORDER BY blacklisted_at",
        (user.id, history.LOCAL_PROVIDER, now),
    )
    machines = []
    for row in rows:
        machine_id = str(row["machine_id"])
        expires = row["expires_at"]
        machines.append(
            {
                "machine_id": int(machine_id) if machine_id.isdigit() else machine_id,
                "reason": row["reason"],
                "failures": int(row["failed_attempts"]),
                "remaining_seconds": None if expires is None else int(float(expires) - now),
            }
        )
    return machines


@router.get("/blacklist/status")
def host_blacklist_status(state: StateDep, user: UserDep) -> dict[str, Any]:
    machines = _host_entries(state, user)
    return {
        "success": True,
        "blacklist": {"count": len(machines), "machines": machines},
        "message": f"{len(machines)} hosts currently blacklisted",
    }


@router.post("/blacklist/{machine_id}")
def host_blacklist_add(
    machine_id: int, state: StateDep, user: UserDep, reason: str = "manual"
) -> dict[str, Any]:
    now = time.time()
    provider = history.LOCAL_PROVIDER
    with state.store.tx() as conn:
        row = conn.execute(
            "SELECT blacklisted_at, expires_at FROM machine_blacklist "
            "WHERE user_id = ? AND provider = ? AND machine_id = ?",
            (user.id, provider, str(machine_id)),
        ).fetchone()
        seconds = float(HOST_BLACKLIST_FIRST_SECONDS)
        if row is not None and row["expires_at"] is not None and float(row["expires_at"]) > now:
            previous = float(row["expires_at"]) - float(row["blacklisted_at"])
            seconds = min(max(previous, seconds) * 2, HOST_BLACKLIST_MAX_SECONDS)
        gpu = next((m.gpu_name for m in market_of(state).by_machine_id(str(machine_id))), None)
        history.add_manual(
            conn, user.id, provider, str(machine_id), reason, seconds / 3600, gpu, now
        )
    return {
        "success": True,
        "message": f"Machine {machine_id} blacklisted for {seconds / 3600:g} h: {reason}",
    }


@router.delete("/blacklist/{machine_id}")
def host_blacklist_remove(machine_id: int, state: StateDep, user: UserDep) -> dict[str, Any]:
    with state.store.tx() as conn:
        removed = conn.execute(
            "DELETE FROM machine_blacklist WHERE user_id = ? AND provider = ? AND machine_id = ?",
            (user.id, history.LOCAL_PROVIDER, str(machine_id)),
        ).rowcount
    if removed:
        return {"success": True, "message": f"Machine {machine_id} removed from blacklist"}
    return {"success": False, "message": f"Machine {machine_id} was not blacklisted"}


# ---------------------------------------------------------------------------- instances


class CreateInstanceRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True, str_max_length=TEXT_MAX)

    offer_id: int = Field(ge=0, le=MAX_INT, description="Offer id from GET /instances/offers.")
    image: str = Field(DEFAULT_IMAGE, description="Image (recorded; the sandbox runs locally).")
    disk_size: float = Field(100, ge=10, description="Disk size in GB.")
    label: str | None = Field(None, description="Instance label.")
    ports: list[Annotated[int, Field(ge=1, le=65535)]] | None = Field(
        default_factory=lambda: [ALWAYS_EXPOSED_PORT],
        max_length=LIST_MAX,
        description="Ports to expose.",
    )
    onstart_cmd: str | None = Field(
        None, description="Run with bash in the workspace each time the instance starts."
    )
    skip_standby: bool = Field(False, alias="skip-standby", description="Accepted; no standby.")
    skip_validation: bool = Field(False, description="Accepted; nothing to pre-validate.")
    use_spot: bool = Field(False, description="Rent at the spot min bid (additive).")


@router.get("")
def list_(
    state: StateDep,
    user: UserDep,
    status: Annotated[
        str | None, Query(description="running, stopped, paused, loading, ...")
    ] = None,
) -> dict[str, Any]:
    found = [_as_served(state, i) for i in list_instances(state, user.id, status)]
    return {"instances": found, "count": len(found)}


@router.post("", status_code=201)
def create(
    body: CreateInstanceRequest, request: Request, state: StateDep, user: UserDep
) -> JSONResponse:
    params = CreateParams(
        offer_id=body.offer_id,
        image=body.image,
        disk_size=body.disk_size,
        label=body.label,
        ports=tuple(body.ports or ()),
        onstart_cmd=body.onstart_cmd,
        use_spot=body.use_spot,
    )

    def make(claim: KeyClaim | None) -> dict[str, Any]:
        try:
            return create_instance(state, user.id, params, claim.record if claim else None)
        except InstanceError as exc:
            raise _http(exc) from exc

    return idempotent_create_in_tx(request, state, user, make)


@router.get("/{instance_id}")
def get(instance_id: int, state: StateDep, user: UserDep) -> dict[str, Any]:
    try:
        return _as_served(state, get_instance(state, user.id, _stored_id(instance_id)))
    except InstanceError as exc:
        raise _http(exc) from exc


def _as_served(state: AppState, instance: dict[str, Any]) -> dict[str, Any]:
    """The instance object; in the real-platform profile without the location fields the
    real instance schema lacks (its instances have no geolocation)."""
    if not state.settings.real_platform:
        return instance
    return {k: v for k, v in instance.items() if k not in ADDITIVE_INSTANCE_FIELDS}


@router.delete("/{instance_id}")
def delete(
    instance_id: int,
    state: StateDep,
    user: UserDep,
    destroy_standby: bool = True,
    reason: Annotated[
        str,
        Query(
            description="user_request, gpu_failure (recorded as a failure), spot_interruption, "
            "race_loser (a cancelled race loser: not a failure), boot_timeout (a loading failure)"
        ),
    ] = "user_request",
) -> dict[str, Any]:
    try:
        return delete_instance(state, user.id, _stored_id(instance_id), reason.strip().lower())
    except InstanceError as exc:
        raise _http(exc) from exc


@router.post("/{instance_id}/pause")
def pause(instance_id: int, state: StateDep, user: UserDep) -> dict[str, Any]:
    try:
        return pause_instance(state, user.id, _stored_id(instance_id))
    except InstanceError as exc:
        raise _http(exc) from exc


class ExecBody(BaseModel):
    """Additive: one command run in a running instance (what `ssh HOST CMD` does elsewhere)."""

    model_config = ConfigDict(extra="forbid")
    command: str = Field(min_length=1, max_length=TEXT_MAX)
    timeout_seconds: float = Field(
        60, gt=0, le=MAX_TIMEOUT_SECONDS, allow_inf_nan=False, description="Then it is killed."
    )


@router.post("/{instance_id}/exec")
def exec_command(
    instance_id: int, state: StateDep, user: UserDep, body: ExecBody | None = None
) -> dict[str, Any]:
    """The body is required, but checked after the instance: someone else's id is a 404
    whatever the body (no 422 telling that the id exists)."""
    try:
        get_instance(state, user.id, _stored_id(instance_id))
        if body is None:
            raise RequestValidationError(
                [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}]
            )
        return exec_in_instance(
            state, user.id, _stored_id(instance_id), body.command, body.timeout_seconds
        )
    except InstanceError as exc:
        raise _http(exc) from exc


@router.post("/{instance_id}/resume")
def resume(instance_id: int, state: StateDep, user: UserDep) -> dict[str, Any]:
    try:
        return resume_instance(state, user.id, _stored_id(instance_id))
    except InstanceError as exc:
        raise _http(exc) from exc


class WakeBody(BaseModel):
    """§3.4's hibernation wake body; every field has its default (the body is optional)."""

    model_config = ConfigDict(str_max_length=TEXT_MAX)

    gpu_type: str | None = Field(None, description="GPU model (default: the instance's).")
    region: str | None = Field(None, description="Region or country code (default: any).")
    max_price: float = Field(1.0, gt=0, le=1000, allow_inf_nan=False, description="$/h at most.")
    restore_snapshot: bool = Field(True, description="Copy the disk to the new machine.")


NO_WAKE_BODY = WakeBody()


@router.post("/{instance_id}/wake")
def wake(
    instance_id: int, state: StateDep, user: UserDep, body: WakeBody = NO_WAKE_BODY
) -> dict[str, Any]:
    """A paused (hibernated) instance moved to a new machine, its disk restored from a
    snapshot; the old instance is deleted. 409 when it is not paused or no offer fits (the
    real platform answers 500)."""
    params = WakeParams(body.gpu_type, body.region, body.max_price, body.restore_snapshot)
    try:
        return wake_instance(state, user.id, _stored_id(instance_id), params)
    except InstanceError as exc:
        raise _http(exc) from exc
