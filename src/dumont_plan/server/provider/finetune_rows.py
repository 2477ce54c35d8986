"""Fine-tune jobs as the API shows them (FTJob, §6.4), the per-user queries, and the trainer's
progress file read into a row.

The trainer appends JSON lines to `progress.jsonl` (`start`, `step`, `checkpoint`, `done`,
`error`); `apply_progress` reads what was appended since the row's `progress_offset` (whole
lines only) and returns the row's new progress fields.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from sqlite3 import Row
from typing import Any

from dumont_plan.server.context import AppState
from dumont_plan.server.provider import job_rows
from dumont_plan.server.provider.job_rows import utc_iso
from dumont_plan.server.store import loads

# Read at most this much of the progress file per pass (the rest at the next one).
PROGRESS_CHUNK = 1024 * 1024


def finetune_view(row: Row) -> dict[str, Any]:
    """The contract's FTJob for a row (plus additive fields)."""
    config = loads(row["config"], {})
    return {
        "id": row["id"],
        "user_id": str(row["user_id"]),
        "name": row["name"],
        "status": row["status"],
        "base_model": row["base_model"],
        "dataset_source": row["dataset_source"],
        "dataset_path": row["dataset_path"],
        "dataset_format": row["dataset_format"],
        "gpu_type": row["gpu_type"],
        "num_gpus": int(row["num_gpus"]),
        "config": config,
        "current_epoch": int(row["current_epoch"]),
        "current_step": int(row["current_step"]),
        "total_steps": int(row["total_steps"]),
        "loss": row["loss"],
        "progress_percent": float(row["progress_percent"]),
        "created_at": utc_iso(row["created_ts"]),
        "started_at": utc_iso(row["started_ts"]),
        "completed_at": utc_iso(row["completed_ts"]),
        "output_model_path": row["output_model_path"],
        "error_message": row["error_message"],
        "cpu_standby_enabled": False,
        "cpu_standby_instance_id": None,
        "cpu_standby_instance_ip": None,
        "last_checkpoint_sync": None,
        "checkpoint_sync_count": 0,
        # Additive fields of the local control plane.
        "preset": row["preset"],
        "executor": row["executor"],
        "exit_code": row["exit_code"],
    }


def get_row(state: AppState, user_id: int, ft_id: str) -> Row | None:
    return state.store.query_one(
        "SELECT * FROM finetune_jobs WHERE id = ? AND user_id = ?", (ft_id, user_id)
    )


def list_rows(
    state: AppState, user_id: int, status: str | None, limit: int, offset: int
) -> tuple[list[Row], int]:
    return job_rows.list_rows(state, user_id, status, limit, offset, table="finetune_jobs")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def apply_event(fields: dict[str, Any], event: dict[str, Any]) -> None:
    """Fold one progress event into the row's progress `fields` (in place)."""
    kind = event.get("event")
    total = _number(event.get("total_steps"))
    if total is not None and total > 0:
        fields["total_steps"] = int(total)
    if kind == "step":
        step = _number(event.get("step"))
        if step is not None:
            fields["current_step"] = int(step)
        epoch = _number(event.get("epoch"))
        if epoch is not None:
            fields["current_epoch"] = max(1, math.ceil(epoch))
        loss = _number(event.get("loss"))
        if loss is not None:
            fields["loss"] = loss
    elif kind == "checkpoint":
        epoch = _number(event.get("epoch"))
        if epoch is not None:
            fields["current_epoch"] = int(epoch)
    elif kind == "done":
        steps = _number(event.get("steps"))
        if steps is not None:
            fields["current_step"] = int(steps)
            fields["total_steps"] = max(int(steps), int(fields.get("total_steps") or 0))
        if isinstance(event.get("output_model_path"), str):
            fields["output_model_path"] = event["output_model_path"]
        fields["done"] = True
    elif kind == "error" and isinstance(event.get("reason"), str):
        fields["error_message"] = event["reason"][:2000]
    if kind in ("start", "step", "checkpoint", "done"):
        fields["training"] = True
    total_steps = int(fields.get("total_steps") or 0)
    if total_steps:
        done = 100.0 if fields.get("done") else 100.0 * fields["current_step"] / total_steps
        fields["progress_percent"] = round(min(100.0, done), 2)


def read_progress(path: Path | None, row: Row) -> dict[str, Any] | None:
    """The row's progress fields after the lines appended since its offset, or None."""
    if path is None:
        return None
    offset = int(row["progress_offset"])
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read(PROGRESS_CHUNK)
    except OSError:
        return None
    cut = data.rfind(b"\n") + 1
    if cut == 0:
        return None
    fields: dict[str, Any] = {
        "current_epoch": int(row["current_epoch"]),
        "current_step": int(row["current_step"]),
        "total_steps": int(row["total_steps"]),
        "loss": row["loss"],
        "progress_percent": float(row["progress_percent"]),
        "output_model_path": row["output_model_path"],
        "error_message": row["error_message"],
        "progress_offset": offset + cut,
    }
    for line in data[:cut].splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            apply_event(fields, event)
    return fields
