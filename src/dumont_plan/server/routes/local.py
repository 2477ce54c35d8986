"""`/api/v1/_local/*`: test hooks of the local control plane (only with test hooks enabled)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, field_validator

from dumont_plan.errors import DeliberateBug
from dumont_plan.server.context import StateDep
from dumont_plan.server.faults import DROP, Fault, FaultQueue
from dumont_plan.server.reconciler import Reconciler

router = APIRouter(prefix="/_local", tags=["local test hooks"], include_in_schema=False)


class FaultRequest(BaseModel):
    count: int = Field(1, ge=0, le=1000)
    status: int = Field(503, description="400-599, or 0: drop (processed, answer lost)")
    retry_after: float | None = Field(None, ge=0)
    method: str | None = Field(None, description="Only for a request with this method.")
    path: str | None = Field(None, description="Only for a request with this path.")

    @field_validator("status")
    @classmethod
    def _status(cls, value: int) -> int:
        if value != DROP and not 400 <= value <= 599:
            raise ValueError("use 400-599, or 0 for a dropped answer")
        return value


class FaultRate(BaseModel):
    rate: float = Field(ge=0, le=1)


@router.post("/faults")
def queue_faults(body: FaultRequest, request: Request) -> dict[str, Any]:
    faults: FaultQueue = request.app.state.faults
    method = body.method.upper() if body.method else None
    faults.push(Fault(body.status, body.retry_after, method, body.path), body.count)
    return {"queued": body.count}


@router.put("/faults/rate")
def set_fault_rate(body: FaultRate, request: Request) -> dict[str, Any]:
    """The random fault rate from now on (0 stops it; the middleware is on with test hooks)."""
    faults: FaultQueue = request.app.state.faults
    faults.rate = body.rate
    return {"rate": body.rate}


@router.delete("/faults")
def clear_faults(request: Request) -> dict[str, Any]:
    faults: FaultQueue = request.app.state.faults
    faults.clear()
    return {"cleared": True}


@router.get("/stats")
def stats(request: Request) -> dict[str, Any]:
    counter: dict[str, int] = request.app.state.request_counts
    return {"requests": dict(counter), "faults_injected": request.app.state.faults.injected}


@router.post("/reconcile")
def reconcile(request: Request) -> dict[str, Any]:
    """Run one reconciler pass before answering: a test that something does *not* happen
    (a status flipping back, a cost moving) drives a pass instead of sleeping past one."""
    reconciler: Reconciler = request.app.state.reconciler
    reconciler.run_once()
    return {"reconciled": True}


class ClockAdvance(BaseModel):
    advance_seconds: float = Field(ge=0, le=10 * 365 * 86400, allow_inf_nan=False)


@router.post("/clock")
def advance_clock(body: ClockAdvance, state: StateDep) -> dict[str, Any]:
    """Move the policy clock (`AppState.clock`: serverless idle timers, savings) forward, so a
    test passes a timeout without sleeping through it; then drive a pass with /reconcile."""
    now = state.clock.advance(body.advance_seconds)
    return {"now": now, "offset_seconds": state.clock.offset}


@router.post("/raise")
def raise_error() -> dict[str, Any]:
    """Fail with an unhandled exception: what a bug in a route does (a 500, and the kept-alive
    connection must stay usable)."""
    raise DeliberateBug("raised on purpose by the test hook")
