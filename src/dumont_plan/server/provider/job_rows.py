"""Jobs as the API shows them: the Job object of a row, and the per-user queries."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from sqlite3 import Row
from typing import Any

from dumont_plan.server.context import AppState


def utc_iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None).isoformat()


def format_duration(seconds: float) -> str:
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def job_view(row: Row, now: float | None = None) -> dict[str, Any]:
    """The contract's Job object (plus additive fields) for a row; cost grows while running."""
    now = time.time() if now is None else now
    started = row["started_ts"]
    end = row["completed_ts"] if row["completed_ts"] is not None else now
    hours = max(0.0, end - started) / 3600 if started is not None else 0.0
    return {
        "id": row["id"],
        "name": row["name"],
        "source": row["source"],
        "gpu_type": row["gpu_type"],
        "status": row["status"],
        "instance_id": None,
        "ssh_host": None,
        "ssh_port": None,
        "created_at": utc_iso(row["created_ts"]),
        "started_at": utc_iso(started),
        "completed_at": utc_iso(row["completed_ts"]),
        "duration": format_duration(end - started) if started is not None else "N/A",
        "total_cost": round(hours * float(row["price_per_hour"]), 4),
        "gpu_hours": round(hours, 4),
        "error_message": row["error_message"],
        # Additive fields of the local control plane.
        "use_spot": bool(row["use_spot"]),
        "num_gpus": int(row["num_gpus"]),
        "num_nodes": int(row["num_nodes"]),
        "price_per_hour": float(row["price_per_hour"]),
        "timeout_minutes": int(row["timeout_minutes"]),
        "max_retries": int(row["max_retries"]),
        "attempt": int(row["attempt"]),
        "exit_code": row["exit_code"],
        "start_at": utc_iso(row["start_at"]),
        "schedule_id": row["schedule_id"],
    }


def get_row(state: AppState, user_id: int, job_id: str) -> Row | None:
    return state.store.query_one(
        "SELECT * FROM jobs WHERE id = ? AND user_id = ?", (job_id, user_id)
    )


def list_rows(
    state: AppState,
    user_id: int,
    status: str | None,
    limit: int,
    offset: int,
    table: str = "jobs",
) -> tuple[list[Row], int]:
    """A page of the user's rows of `table` (jobs, finetune_jobs), newest first, and how many
    match in all."""
    where = "user_id = ?"
    params: list[Any] = [user_id]
    if status is not None:
        where += " AND status = ?"
        params.append(status)
    total = state.store.query_one(f"SELECT COUNT(*) AS n FROM {table} WHERE {where}", tuple(params))
    rows = state.store.query(
        f"SELECT * FROM {table} WHERE {where}"
        " ORDER BY created_ts DESC, rowid DESC LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )
    return rows, int(total["n"]) if total else 0
