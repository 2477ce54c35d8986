"""`/api/v1/_local/*`: test hooks of the local control plane (only with test hooks enabled)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from dumont_plan.server.faults import Fault, FaultQueue

router = APIRouter(prefix="/_local", tags=["local test hooks"], include_in_schema=False)


class FaultRequest(BaseModel):
    count: int = Field(1, ge=0, le=1000)
    status: int = Field(503, ge=400, le=599)
    retry_after: float | None = Field(None, ge=0)


@router.post("/faults")
def queue_faults(body: FaultRequest, request: Request) -> dict[str, Any]:
    faults: FaultQueue = request.app.state.faults
    faults.push(Fault(body.status, body.retry_after), body.count)
    return {"queued": body.count}


@router.delete("/faults")
def clear_faults(request: Request) -> dict[str, Any]:
    faults: FaultQueue = request.app.state.faults
    faults.clear()
    return {"cleared": True}


@router.get("/stats")
def stats(request: Request) -> dict[str, Any]:
    counter: dict[str, int] = request.app.state.request_counts
    return {"requests": dict(counter), "faults_injected": request.app.state.faults.injected}
