"""`/api/v1/machines/history`: the caller's machine attempts, stats and blacklist (§9.1).

Unlike the real platform (one global history, quirk 13), every attempt and entry belongs to the
user who made it. Reads have no side effects: `blacklist/check` reports an expired entry as
inactive (`is_blacklisted: false`, `info.is_active: false`) instead of deleting it (quirk 58).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from dumont_plan.server.context import StateDep, UserDep
from dumont_plan.server.limits import MAX_INT
from dumont_plan.server.provider import history
from dumont_plan.server.provider.instances import market_of

router = APIRouter(prefix="/machines/history", tags=["machine history"])

# A manual blacklist entry lasts at most 10 years (longer ones overflowed every later read).
MAX_BLACKLIST_HOURS = 10 * 366 * 24
# Provider, machine id, reason, GPU name of a blacklist entry.
NAME_MAX = 1024

ProviderQ = Annotated[str | None, Query(description="Filter by provider (local, vast, ...)")]


@router.get("/summary")
def summary(
    state: StateDep,
    user: UserDep,
    provider: ProviderQ = None,
    hours: Annotated[int, Query(ge=1, le=168)] = 24,
) -> dict[str, Any]:
    now = time.time()
    sql = (
        "SELECT success, failure_stage FROM machine_attempts "
        "WHERE user_id = ? AND attempted_at >= ?"
    )
    params: list[Any] = [user.id, now - hours * 3600]
    if provider is not None:
        sql += " AND provider = ?"
        params.append(provider)
    rows = state.store.query(sql, tuple(params))
    successful = sum(1 for r in rows if r["success"])
    stages: dict[str, int] = {}
    for r in rows:
        if not r["success"]:
            stage = str(r["failure_stage"] or "unknown")
            stages[stage] = stages.get(stage, 0) + 1
    listed = history.active_blacklist(history.store_query(state.store), user.id, now)
    blacklisted = sum(1 for p, _ in listed if provider is None or p == provider)
    return {
        "period_hours": hours,
        "provider": provider or "all",
        "total_attempts": len(rows),
        "successful": successful,
        "failed": len(rows) - successful,
        "success_rate": round(successful / len(rows), 4) if rows else 0.0,
        "failure_stages": stages,
        "blacklisted_machines": blacklisted,
    }


@router.get("/attempts")
def attempts(
    state: StateDep,
    user: UserDep,
    provider: ProviderQ = None,
    machine_id: Annotated[str | None, Query(description="Filter by machine")] = None,
    success_only: Annotated[
        bool | None, Query(description="true: successes only; false: failures only")
    ] = None,
    hours: Annotated[int, Query(ge=1, le=168)] = 72,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    sql = "SELECT * FROM machine_attempts WHERE user_id = ? AND attempted_at >= ?"
    params: list[Any] = [user.id, time.time() - hours * 3600]
    if provider is not None:
        sql += " AND provider = ?"
        params.append(provider)
    if machine_id is not None:
        sql += " AND machine_id = ?"
        params.append(machine_id)
    if success_only is not None:
        sql += " AND success = ?"
        params.append(int(success_only))
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit)
    return [history.attempt_entry(r) for r in state.store.query(sql, tuple(params))]


@router.get("/stats/{provider}/{machine_id}")
def stats(provider: str, machine_id: str, state: StateDep, user: UserDep) -> dict[str, Any]:
    found = history.machine_stats(
        history.store_query(state.store), user.id, provider=provider, machine_id=machine_id
    )
    if not found:
        raise HTTPException(404, "Machine stats not found")
    return found[0]


@router.get("/problematic")
def problematic(
    state: StateDep,
    user: UserDep,
    provider: ProviderQ = None,
    min_attempts: Annotated[int, Query(ge=1, le=MAX_INT)] = 3,
    max_success_rate: Annotated[float, Query(ge=0, le=1, allow_inf_nan=False)] = 0.5,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[dict[str, Any]]:
    found = [
        s
        for s in history.machine_stats(history.store_query(state.store), user.id, provider=provider)
        if s["total_attempts"] >= min_attempts and s["success_rate"] <= max_success_rate
    ]
    found.sort(key=lambda s: (s["success_rate"], -s["failed_attempts"], s["machine_id"]))
    return found[:limit]


@router.get("/reliable")
def reliable(
    state: StateDep,
    user: UserDep,
    provider: ProviderQ = None,
    min_attempts: Annotated[int, Query(ge=1, le=MAX_INT)] = 5,
    min_success_rate: Annotated[float, Query(ge=0, le=1, allow_inf_nan=False)] = 0.8,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[dict[str, Any]]:
    found = [
        s
        for s in history.machine_stats(history.store_query(state.store), user.id, provider=provider)
        if s["total_attempts"] >= min_attempts and s["success_rate"] >= min_success_rate
    ]
    found.sort(key=lambda s: (-s["success_rate"], -s["total_attempts"], s["machine_id"]))
    return found[:limit]


BLACKLIST_TYPES = ("auto", "manual", "temporary")


@router.get("/blacklist")
def blacklist(
    state: StateDep,
    user: UserDep,
    provider: ProviderQ = None,
    blacklist_type: Annotated[str | None, Query(description="auto, manual or temporary")] = None,
    include_expired: bool = False,
) -> list[dict[str, Any]]:
    now = time.time()
    sql = "SELECT * FROM machine_blacklist WHERE user_id = ?"
    params: list[Any] = [user.id]
    if provider is not None:
        sql += " AND provider = ?"
        params.append(provider)
    if blacklist_type is not None:
        if blacklist_type not in BLACKLIST_TYPES:
            raise HTTPException(
                400,
                f"blacklist_type: unknown value {blacklist_type!r}; "
                f"use one of {', '.join(BLACKLIST_TYPES)}",
            )
        sql += " AND blacklist_type = ?"
        params.append(blacklist_type)
    if not include_expired:
        sql += " AND (expires_at IS NULL OR expires_at > ?)"
        params.append(now)
    sql += " ORDER BY blacklisted_at DESC, id DESC"
    return [history.blacklist_entry(r, now) for r in state.store.query(sql, tuple(params))]


@router.get("/blacklist/check/{provider}/{machine_id}")
def check(provider: str, machine_id: str, state: StateDep, user: UserDep) -> dict[str, Any]:
    row = state.store.query_one(
        "SELECT * FROM machine_blacklist WHERE user_id = ? AND provider = ? AND machine_id = ?",
        (user.id, provider, machine_id),
    )
    if row is None:
        return {"is_blacklisted": False, "info": None}
    entry = history.blacklist_entry(row)
    return {"is_blacklisted": entry["is_active"], "info": entry}


class AddBlacklistRequest(BaseModel):
    model_config = ConfigDict(str_max_length=NAME_MAX)

    provider: str = Field(min_length=1, description="Provider id (local, vast, tensordock, ...).")
    machine_id: str = Field(min_length=1, description="Machine id at the provider.")
    reason: str = Field(min_length=1, description="Why the machine is blocked.")
    duration_hours: int | None = Field(
        None, ge=1, le=MAX_BLACKLIST_HOURS, description="Hours (up to 10 years); null = permanent."
    )
    gpu_name: str | None = Field(None, description="GPU name (optional).")


@router.post("/blacklist")
def add(body: AddBlacklistRequest, state: StateDep, user: UserDep) -> dict[str, Any]:
    provider, machine_id = body.provider.strip(), body.machine_id.strip()
    gpu = body.gpu_name
    if gpu is None and provider == history.LOCAL_PROVIDER:
        gpu = next((m.gpu_name for m in market_of(state).by_machine_id(machine_id)), None)
    with state.store.tx() as conn:
        history.add_manual(
            conn, user.id, provider, machine_id, body.reason, body.duration_hours, gpu
        )
        row = conn.execute(
            "SELECT * FROM machine_blacklist WHERE user_id = ? AND provider = ? AND machine_id = ?",
            (user.id, provider, machine_id),
        ).fetchone()
    return history.blacklist_entry(row)


@router.delete("/blacklist/{provider}/{machine_id}")
def remove(provider: str, machine_id: str, state: StateDep, user: UserDep) -> dict[str, Any]:
    with state.store.tx() as conn:
        removed = conn.execute(
            "DELETE FROM machine_blacklist WHERE user_id = ? AND provider = ? AND machine_id = ?",
            (user.id, provider, machine_id),
        ).rowcount
    if not removed:
        raise HTTPException(404, "Machine not in blacklist")
    return {"success": True, "message": f"Removed {provider}:{machine_id} from blacklist"}
