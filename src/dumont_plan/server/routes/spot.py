"""`/api/v1/spot`: templates, spot deployments with failover, pricing, the dashboard's data.

Contract §8; behaviour in provider/spot.py (templates, deployments), provider/spot_failover.py
(interruptions, failover, sync) and provider/spot_market.py (prices). Additive: `POST
/spot/interrupt/{id}` (an operator's interruption, for chaos testing), `POST /spot/sync/{id}`
(sync the workspace now), `Idempotency-Key` on the template and deploy creates, the
`sync_interval_seconds` deploy field, the extra fields of every
answer, and `GET /spot/dashboard/{events,spend,prices}` (the `/dashboard` page's data).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from dumont_plan.errors import SpotError
from dumont_plan.server.context import StateDep, UserDep
from dumont_plan.server.idempotency import idempotent_create
from dumont_plan.server.limits import TEXT_MAX
from dumont_plan.server.provider import spot, spot_dashboard
from dumont_plan.server.provider.market import GPU_MODELS, canonical_gpu, known_gpu
from dumont_plan.server.provider.sandbox import WORKSPACE_MOUNT, map_workspace_path
from dumont_plan.server.provider.spot_market import comparison as static_comparison
from dumont_plan.server.provider.spot_market import pricing as live_pricing
from dumont_plan.server.routes.instances import SQLITE_INTEGER

router = APIRouter(prefix="/spot", tags=["spot"])
T = TypeVar("T")

NAME_MAX = 200
SYNC_INTERVAL_MAX = 7 * 24 * 3600.0
WORKSPACE_MOUNT_DIR = Path(str(WORKSPACE_MOUNT))


def _answer(call: Callable[[], T]) -> T:
    """`call()`, its SpotError answered with the error's status and message."""
    try:
        return call()
    except SpotError as exc:
        raise HTTPException(exc.status, exc.message) from exc


def _stored_id(instance_id: int) -> int:
    if instance_id not in SQLITE_INTEGER:
        raise HTTPException(404, f"Instance {instance_id} not configured for spot")
    return instance_id


def _gpu(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    if not known_gpu(value.strip()):
        raise ValueError(f"unknown GPU {value!r}; use one of: {', '.join(GPU_MODELS)}")
    return canonical_gpu(value.strip())


class CreateTemplateRequest(BaseModel):
    model_config = ConfigDict(str_max_length=NAME_MAX)

    region: str | None = Field(
        None, description="Region of the template (US, EU, ASIA, ...); the instance's by default."
    )
    workspace_path: str = Field(
        "/workspace", description="The workspace folder to snapshot (under /workspace)."
    )

    @field_validator("workspace_path")
    @classmethod
    def _inside(cls, value: str) -> str:
        if map_workspace_path(WORKSPACE_MOUNT_DIR, value) is None:
            raise ValueError(f"{value!r} is outside {WORKSPACE_MOUNT}; use /workspace or under it")
        return value


class DeploySpotRequest(BaseModel):
    model_config = ConfigDict(str_max_length=NAME_MAX)

    template_id: str = Field(min_length=1, description="Template id from GET /spot/templates.")
    max_price: float = Field(
        1.0, ge=0.01, le=10.0, allow_inf_nan=False, description="Highest bid in $/h."
    )
    gpu_preference: str | None = Field(
        None, description="GPU model (RTX 4090, ...); None: the cheapest available."
    )
    auto_failover: bool = Field(True, description="Fail over automatically when interrupted.")
    sync_interval_seconds: float | None = Field(
        None,
        ge=0,
        le=SYNC_INTERVAL_MAX,
        allow_inf_nan=False,
        description="Seconds between workspace syncs (0: every reconciler pass; additive). "
        "Default: the server's (DUMONT_SERVER_SPOT_SYNC_INTERVAL, 30).",
    )

    @field_validator("gpu_preference")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        return _gpu(value)


# ---------------------------------------------------------------------------- templates


@router.post("/template/{instance_id}", response_model=dict[str, Any])
def create_template(
    instance_id: int,
    request: Request,
    state: StateDep,
    user: UserDep,
    body: CreateTemplateRequest = CreateTemplateRequest(),
) -> Response:
    """Snapshot the workspace of one of your instances as a template.

    With an `Idempotency-Key` a repeated request answers the first template (additive)."""

    def create() -> dict[str, Any]:
        return _answer(
            lambda: spot.create_template(
                state, user.id, _stored_id(instance_id), body.region, body.workspace_path
            )
        )

    return idempotent_create(request, state, user, create, status_code=200)


@router.get("/templates")
def list_templates(state: StateDep, user: UserDep) -> list[dict[str, Any]]:
    return spot.list_templates(state, user.id)


@router.delete("/template/{template_id}")
def delete_template(template_id: str, state: StateDep, user: UserDep) -> dict[str, Any]:
    """Delete a template and its snapshot (deployments keep their own snapshot)."""
    return _answer(lambda: spot.delete_template(state, user.id, template_id[:TEXT_MAX]))


# ---------------------------------------------------------------------------- deployments


@router.post("/deploy", response_model=dict[str, Any])
def deploy(body: DeploySpotRequest, request: Request, state: StateDep, user: UserDep) -> Response:
    """Rent the cheapest fitting spot offer at its minimum bid; restore the template there.

    With an `Idempotency-Key` a repeated request answers the first deployment instead of
    renting a second machine (additive: an apply killed mid-request and run again)."""
    interval = body.sync_interval_seconds
    params = spot.DeployParams(
        template_id=body.template_id,
        max_price=body.max_price,
        gpu_preference=body.gpu_preference,
        auto_failover=body.auto_failover,
        sync_interval=state.settings.spot_sync_interval if interval is None else interval,
    )
    return idempotent_create(
        request, state, user, lambda: _answer(lambda: spot.deploy(state, user.id, params)), 200
    )


@router.get("/status/{instance_id}")
def status(instance_id: int, state: StateDep, user: UserDep) -> dict[str, Any]:
    return _answer(lambda: spot.get_status(state, user.id, _stored_id(instance_id)))


@router.get("/instances")
def instances(state: StateDep, user: UserDep) -> list[dict[str, Any]]:
    return spot.list_deployments(state, user.id)


@router.post("/failover/{instance_id}")
def failover(instance_id: int, state: StateDep, user: UserDep) -> dict[str, Any]:
    """Move the deployment to another spot machine now; answers the new instance id."""
    return _answer(lambda: spot.manual_failover(state, user.id, _stored_id(instance_id)))


@router.post("/interrupt/{instance_id}")
def interrupt(instance_id: int, state: StateDep, user: UserDep) -> dict[str, Any]:
    """Interrupt the spot instance now, as the market would (additive; chaos testing)."""
    return _answer(lambda: spot.operator_interrupt(state, user.id, _stored_id(instance_id)))


@router.post("/sync/{instance_id}")
def sync(instance_id: int, state: StateDep, user: UserDep) -> dict[str, Any]:
    """Sync the instance's workspace to the deployment's snapshot now (additive)."""
    return _answer(lambda: spot.sync_now(state, user.id, _stored_id(instance_id)))


@router.post("/stop/{instance_id}")
def stop(instance_id: int, state: StateDep, user: UserDep) -> dict[str, Any]:
    return _answer(lambda: spot.stop(state, user.id, _stored_id(instance_id)))


@router.delete("/instance/{instance_id}")
def remove(instance_id: int, state: StateDep, user: UserDep) -> dict[str, Any]:
    """Delete the deployment, its instance and its snapshot."""
    return _answer(lambda: spot.remove(state, user.id, _stored_id(instance_id)))


# ---------------------------------------------------------------------------- prices


@router.get("/pricing")
def pricing(
    state: StateDep,
    user: UserDep,
    region: Annotated[
        str, Query(max_length=NAME_MAX, description="Region (US, EU, ASIA, global)")
    ] = "global",
    gpu_name: Annotated[str | None, Query(max_length=NAME_MAX, description="GPU model")] = None,
    include_all: Annotated[bool, Query(description="Include unstable machines")] = False,
) -> dict[str, Any]:
    gpu = canonical_gpu(gpu_name.strip()) if gpu_name and gpu_name.strip() else None
    return live_pricing(state, region, gpu, include_all)


@router.get("/comparison")
def comparison(user: UserDep) -> dict[str, Any]:
    return static_comparison()


# ---------------------------------------------------------------------------- dashboard data

Hours = Annotated[float, Query(gt=0, le=24 * 30, allow_inf_nan=False)]


@router.get("/dashboard/events")
def dashboard_events(state: StateDep, user: UserDep, hours: Hours = 24) -> dict[str, Any]:
    """Your interruptions (per period and each) and failovers with their time to recover."""
    return spot_dashboard.events(state, user.id, hours)


@router.get("/dashboard/spend")
def dashboard_spend(state: StateDep, user: UserDep) -> dict[str, Any]:
    """Your spot spend against the on-demand price of the same machine-hours."""
    return spot_dashboard.spend(state, user.id)


@router.get("/dashboard/prices")
def dashboard_prices(
    state: StateDep,
    user: UserDep,
    gpu_name: Annotated[str | None, Query(max_length=NAME_MAX)] = None,
    hours: Hours = 6,
    points: Annotated[int, Query(ge=2, le=500)] = 49,
) -> dict[str, Any]:
    """Price history per GPU (cheapest and average spot, average on-demand)."""
    gpu = canonical_gpu(gpu_name.strip()) if gpu_name and gpu_name.strip() else None
    return spot_dashboard.prices(state, user.id, gpu, hours, points)
