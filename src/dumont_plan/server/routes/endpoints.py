"""`/api/v1/serverless/endpoints` and `/serverless/stats` (contract §7.3): endpoints that run.

Every route needs a token and addresses only the caller's endpoints (404 otherwise). Unlike the
real platform's in-memory simulation, an endpoint here runs: its `command` (additive; the local
executor, `docker_image` is kept for real clouds) serves HTTP on `$PORT` in sandboxed workers
that scale with requests between `min_instances` and `max_instances`. Additive fields:
`command`, `concurrency` (requests in flight per worker), `idle_timeout_seconds` (idle time
before a worker above `min_instances` stops); additive route
`GET|POST /serverless/endpoints/{id}/invoke/{path}` (the request path, proxied to a worker).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dumont_plan.errors import ServerlessError
from dumont_plan.server.context import StateDep, UserDep
from dumont_plan.server.provider import endpoint_proxy, endpoints
from dumont_plan.server.provider.endpoints import EndpointSpec

router = APIRouter(prefix="/serverless", tags=["serverless endpoints"])

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_ENV_VARS = 100
T = TypeVar("T")


def _answer(call: Callable[[], T]) -> T:
    try:
        return call()
    except ServerlessError as exc:
        if exc.status == 422:
            raise RequestValidationError(
                [{"type": "value_error", "loc": ["body"], "msg": exc.message, "input": None}]
            ) from exc
        raise HTTPException(exc.status, exc.message) from exc


class ScalingFields(BaseModel):
    model_config = ConfigDict(str_max_length=10_000)

    command: str | None = Field(
        None,
        min_length=1,
        description="Shell command serving HTTP on $PORT (the local executor). Additive.",
    )
    concurrency: int | None = Field(
        None, ge=1, le=1000, description="Requests in flight per worker. Additive."
    )
    idle_timeout_seconds: int | None = Field(
        None, ge=1, le=3600, description="Idle seconds before a worker stops. Additive."
    )

    @field_validator("command")
    @classmethod
    def _command(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or "\0" in value):
            raise ValueError("give a non-empty command without NUL bytes")
        return value


class CreateEndpointRequest(ScalingFields):
    name: str = Field(min_length=1, max_length=100, description="Endpoint name.")
    machine_type: str = Field("spot", max_length=50, description="spot or on-demand.")
    gpu_name: str = Field("RTX 4090", min_length=1, max_length=100)
    region: str = Field("US", max_length=50)
    min_instances: int = Field(0, ge=0, le=10)
    max_instances: int = Field(5, ge=1, le=50)
    target_latency_ms: int = Field(500, ge=50, le=5000, description="Not stored.")
    timeout_seconds: int = Field(300, ge=30, le=3600, description="Not stored.")
    docker_image: str = Field(min_length=1, max_length=500, description="Image for real clouds.")
    model_id: str = Field("", max_length=500)
    env_vars: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip() or any(ord(c) < 32 for c in value):
            raise ValueError("give a name of printable characters")
        return value.strip()

    @field_validator("env_vars")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_ENV_VARS:
            raise ValueError(f"at most {MAX_ENV_VARS} variables")
        for key, item in value.items():
            if not ENV_NAME.match(key) or key in ("PORT", "DUMONT_ENDPOINT_ID"):
                raise ValueError(f"{key!r} is not a usable variable name (letters, digits, _)")
            if "\0" in item or len(item) > 10_000:
                raise ValueError(f"the value of {key} is too long or has a NUL byte")
        return value

    @model_validator(mode="after")
    def _range(self) -> CreateEndpointRequest:
        if self.min_instances > self.max_instances:
            raise ValueError("min_instances is above max_instances")
        return self


class UpdateEndpointRequest(ScalingFields):
    min_instances: int | None = Field(None, ge=0, le=10)
    max_instances: int | None = Field(None, ge=1, le=50)
    machine_type: str | None = Field(None, max_length=50)


def _view(state: StateDep, user: UserDep, endpoint_id: str) -> dict[str, Any]:
    row = endpoints.own_endpoint(state, user.id, endpoint_id)
    return endpoints.endpoint_json(state, user.email, row)


@router.get("/endpoints")
def list_(state: StateDep, user: UserDep) -> dict[str, Any]:
    rows = endpoints.list_endpoints(state, user.id)
    return {"endpoints": [endpoints.endpoint_json(state, user.email, r) for r in rows]}


@router.post("/endpoints")
def create(body: CreateEndpointRequest, state: StateDep, user: UserDep) -> dict[str, Any]:
    """200 with the endpoint and a `message` (as the contract); `min_instances` start now."""
    spec = EndpointSpec(
        name=body.name,
        docker_image=body.docker_image,
        command=body.command,
        machine_type=body.machine_type,
        gpu_name=body.gpu_name,
        region=body.region,
        model_id=body.model_id,
        env_vars=body.env_vars,
        min_instances=body.min_instances,
        max_instances=body.max_instances,
        concurrency=body.concurrency or 1,
        idle_timeout_seconds=body.idle_timeout_seconds or 60,
    )
    row = _answer(lambda: endpoints.create_endpoint(state, user.id, spec))
    answer = endpoints.endpoint_json(state, user.email, row)
    answer["message"] = f"Endpoint {row['id']} created"
    return answer


@router.get("/endpoints/{endpoint_id}")
def get(endpoint_id: str, state: StateDep, user: UserDep) -> dict[str, Any]:
    """Additive (the real platform has no single-endpoint GET)."""
    return _answer(lambda: _view(state, user, endpoint_id))


NO_CHANGES = UpdateEndpointRequest()


@router.put("/endpoints/{endpoint_id}")
def update(
    endpoint_id: str, state: StateDep, user: UserDep, body: UpdateEndpointRequest = NO_CHANGES
) -> dict[str, Any]:
    """Scaling and price class change in place; a new `command` replaces the workers. No body
    (or `{}`) changes nothing."""
    changes = body.model_dump(exclude_none=True)
    row = _answer(lambda: endpoints.update_endpoint(state, user.id, endpoint_id, changes))
    answer = endpoints.endpoint_json(state, user.email, row)
    answer["message"] = f"Endpoint {endpoint_id} updated"
    return answer


@router.delete("/endpoints/{endpoint_id}")
def delete(endpoint_id: str, state: StateDep, user: UserDep) -> dict[str, Any]:
    """Every worker of the endpoint is stopped before the answer."""
    _answer(lambda: endpoints.delete_endpoint(state, user.id, endpoint_id))
    return {"message": f"Endpoint {endpoint_id} deleted successfully"}


@router.post("/endpoints/{endpoint_id}/pause")
def pause(endpoint_id: str, state: StateDep, user: UserDep) -> dict[str, Any]:
    """Stops every worker; requests are refused (409) until resumed."""
    _answer(lambda: endpoints.set_paused(state, user.id, endpoint_id, True))
    return {"message": f"Endpoint {endpoint_id} paused", "status": "paused"}


@router.post("/endpoints/{endpoint_id}/resume")
def resume(endpoint_id: str, state: StateDep, user: UserDep) -> dict[str, Any]:
    """`min_instances` workers start again; status `running` (or `provisioning` until they
    are ready)."""
    row = _answer(lambda: endpoints.set_paused(state, user.id, endpoint_id, False))
    status, _ = endpoints.status_of(state, row)
    return {"message": f"Endpoint {endpoint_id} resumed", "status": status}


@router.get("/stats")
def stats(state: StateDep, user: UserDep) -> dict[str, Any]:
    return endpoints.stats(state, user.id)


async def _invoke(
    endpoint_id: str, path: str, request: Request, state: StateDep, user_id: int
) -> Response:
    row = _answer(lambda: endpoints.own_endpoint(state, user_id, endpoint_id))
    if row["paused"]:
        raise HTTPException(409, f"Endpoint {endpoint_id} is paused: resume it first")
    body = await request.body()
    try:
        answer = await endpoint_proxy.invoke(
            state,
            row,
            request.method,
            path,
            request.url.query,
            dict(request.headers),
            body,
        )
    except ServerlessError as exc:
        raise HTTPException(exc.status, exc.message) from exc
    return Response(answer.content, answer.status, headers=answer.headers)


@router.get("/endpoints/{endpoint_id}/invoke/{path:path}")
async def invoke_get(
    endpoint_id: str, path: str, request: Request, state: StateDep, user: UserDep
) -> Response:
    """Additive: the request path. Proxied (method, path, query, body, headers but the
    caller's credentials) to a worker of the endpoint, started on demand; the answer is the
    worker's, plus `X-Dumont-Worker` and `X-Dumont-Cold-Start` (1 when this request waited
    for a worker to boot). 409 when paused or without a command; 502 when the command does
    not serve."""
    return await _invoke(endpoint_id, path, request, state, user.id)


@router.post("/endpoints/{endpoint_id}/invoke/{path:path}")
async def invoke_post(
    endpoint_id: str, path: str, request: Request, state: StateDep, user: UserDep
) -> Response:
    """Additive: as GET, with the request's body passed on."""
    return await _invoke(endpoint_id, path, request, state, user.id)
