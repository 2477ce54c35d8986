"""`POST /api/v1/agent/status`: the heartbeat of an instance's agent (contract §7.1).

Its GPU utilisation (`gpu_utilization`, or `gpu_metrics.utilization`: one number or one per
GPU, the highest counts) is what the serverless reconciler uses for that instance while the
heartbeat is fresh. Unlike the real platform (no auth, any instance id), a heartbeat needs the
instance owner's token: nobody else can make an instance look idle (and pause it) or busy.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field, field_validator

from dumont_plan.errors import ServerlessError
from dumont_plan.server.context import StateDep, UserDep
from dumont_plan.server.limits import MAX_INT
from dumont_plan.server.provider import serverless

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


@router.post("/status")
def agent_status(body: AgentStatus, state: StateDep, user: UserDep) -> dict[str, Any]:
    try:
        return serverless.heartbeat(state, user.id, body.instance_id, body.utilisation())
    except ServerlessError as exc:
        raise HTTPException(exc.status, exc.message) from exc
