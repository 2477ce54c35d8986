"""`POST /api/v1/agent/status`: the heartbeat of an instance's agent (contract §7.1).

Its GPU utilisation (`gpu_utilization`, or `gpu_metrics.utilization`: one number or one per
GPU, the highest counts) is what the serverless reconciler uses for that instance while the
heartbeat is fresh. Unlike the real platform (no auth, any instance id), a heartbeat needs the
instance owner's token, or the instance's own agent token (`X-Dumont-Agent-Token`, in its
processes' environment: provider/agent.py): nobody else can make an instance look idle (and
pause it) or busy.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from dumont_plan.errors import ServerlessError
from dumont_plan.server.context import StateDep, current_user
from dumont_plan.server.limits import MAX_INT
from dumont_plan.server.provider import agent, serverless

router = APIRouter(prefix="/agent", tags=["agent"])

Percent = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]


class GpuMetrics(BaseModel):
    model_config = ConfigDict(extra="allow")

    utilization: Percent | list[Percent] | None = None


class AgentStatus(BaseModel):
    model_config = ConfigDict(str_max_length=256)

    instance_id: int = Field(
        description='The instance id: 30000001, "30000001" or "vast_30000001".'
    )
    version: str | None = None
    status: str | None = None
    timestamp: str | float | None = None
    gpu_utilization: Percent | None = Field(None, description="GPU utilisation, %.")
    gpu_metrics: GpuMetrics | None = None

    @field_validator("instance_id", mode="before")
    @classmethod
    def _instance_id(cls, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError('an instance id such as 30000001 or "vast_30000001"')
        text = str(value).strip().rpartition("_")[2]
        if not text.isdigit() or int(text) > MAX_INT:
            raise ValueError('an instance id such as "30000001" or "vast_30000001"')
        return int(text)

    def utilisation(self) -> float | None:
        if self.gpu_utilization is not None:
            return self.gpu_utilization
        metric = self.gpu_metrics.utilization if self.gpu_metrics else None
        if isinstance(metric, list):
            return max(metric) if metric else None
        return metric


class Caller(BaseModel):
    user_id: int
    instance_id: int | None = None  # an agent token speaks for this instance only


def heartbeat_caller(request: Request, state: StateDep) -> Caller:
    """The instance's agent (its token) or a logged-in user (else 401), before the body."""
    token = request.headers.get(agent.HEADER)
    if token is None:
        return Caller(user_id=current_user(request, state).id)
    instance_id = agent.token_instance(state, token)
    row = (
        state.store.query_one(
            "SELECT user_id FROM instances WHERE id = ? AND deleted_at IS NULL", (instance_id,)
        )
        if instance_id is not None
        else None
    )
    if row is None:
        raise HTTPException(401, "Not authenticated", headers={"WWW-Authenticate": "Bearer"})
    return Caller(user_id=int(row["user_id"]), instance_id=instance_id)


@router.post("/status")
def agent_status(
    body: AgentStatus, state: StateDep, caller: Annotated[Caller, Depends(heartbeat_caller)]
) -> dict[str, Any]:
    if caller.instance_id is not None and caller.instance_id != body.instance_id:
        raise HTTPException(403, f"this agent token is for instance {caller.instance_id} only")
    try:
        return serverless.heartbeat(state, caller.user_id, body.instance_id, body.utilisation())
    except ServerlessError as exc:
        raise HTTPException(exc.status, exc.message) from exc
