"""Fine-tune jobs: submit, launch, supervise, cancel, delete. A fine-tune whose row says
`executor = 'skypilot'` (a server started with `--executor=skypilot`) keeps its row, queue and
inputs here and is launched, followed and cancelled as a SkyPilot managed job by
`sky_finetunes`; what follows is the local executor.

Each fine-tune has a directory `<data_dir>/sandboxes/finetunes/<id>/` laid out like a job's
(`spec.json`, `state.json`, `job.log`, `workspace/`, `outputs/`) plus `inputs/` (the dataset
and the trainer's `config.json`, copied into the workspace's `input/` at start). A detached
runner (`ft_runner.py`, the job runner with a fine-tune's inputs) runs
`python -I <trainer.py> input/config.json` in the sandbox; the trainer's stdout streams into
`job.log`, its progress events into `outputs/progress.jsonl`.

Statuses (§6.5): `pending` (recorded; waits while the user has `max_running_finetunes`
training) -> `queued` (runner started) -> `running` (the trainer runs) -> `completed` (the
trainer said `done`: `output_model_path` is set) | `failed` (`error_message` says why: the
trainer's own reason, or its exit code and last log line) | `cancelled`. The reconciler moves
them (`reconcile_finetunes`, every tick). A runner outlives a restart of the control plane and
is re-attached by its (pid, start time) and token; one that vanished meanwhile fails the job
with a reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from sqlite3 import Row
from typing import Any

from dumont_plan.server.context import AppState
from dumont_plan.server.provider import (
    finetune_catalog,
    ft_runner,
    isolation,
    joblog,
    runner,
    sky_finetunes,
)
from dumont_plan.server.provider.executors import executor_name
from dumont_plan.server.provider.finetune_rows import finetune_view, get_row, read_progress
from dumont_plan.server.provider.joblog import LogPiece
from dumont_plan.server.provider.jobs import OnInsert
from dumont_plan.server.provider.sandbox import (
    Sandbox,
    kill_tagged,
    pid_alive,
    process_start_time,
    read_json,
    workload_env,
    write_json_atomic,
)
from dumont_plan.server.store import dumps
from dumont_plan.wire import FINISHED_FINETUNE_STATUSES

FINISHED = FINISHED_FINETUNE_STATUSES
ACTIVE = ("queued", "running")
NOT_FINISHED_SQL = "status NOT IN (" + ", ".join(f"'{s}'" for s in FINISHED) + ")"
OUTPUT_DIR = ft_runner.OUTPUT_DIR
PROGRESS_FILE = "progress.jsonl"
TIMEOUT_MINUTES = 24 * 60
DISK_SIZE_GB = 200
CANCEL_WAIT_SECONDS = 3.0
LOST_WHILE_DOWN = "the trainer's runner was lost while the control plane was down"
LOST_WHILE_UP = "the trainer's runner ended unexpectedly"
# Runner processes this control plane started (reaped so that none stays a zombie).
_children: dict[str, subprocess.Popen[bytes]] = {}
# Fine-tunes whose runner this process has seen alive (a lost one then ended while it was up).
_seen_alive: set[str] = set()
_lock = threading.RLock()


def new_id() -> str:
    return uuid.uuid4().hex[:8]


def ft_dir(state: AppState, ft_id: str) -> Path:
    return state.settings.sandboxes_dir / "finetunes" / ft_id


def tag_of(ft_id: str) -> str:
    return f"finetune-{ft_id}"


def workspace_root(spec: dict[str, Any], directory: Path) -> str:
    """Where the workload sees its workspace: /workspace when sandboxed, else its host path."""
    sandboxed = (spec.get("sandbox") or {}).get("isolation") == "bwrap"
    return isolation.WORKSPACE if sandboxed else str(Sandbox(directory).workspace)


# -- submit ------------------------------------------------------------------------------------


def submit(
    state: AppState,
    user_id: int,
    fields: dict[str, Any],
    dataset: Path,
    shared: list[Path],
    on_insert: OnInsert | None = None,
) -> dict[str, Any]:
    """Record a fine-tune (pending), lay out its inputs, start it when the user has room.

    `fields`: the validated create request (config merged with its preset); `dataset`: a
    checked data file (copied); `shared`: host paths the trainer reads (model cache, a local
    model folder), mounted read-only; `on_insert(conn, view)` runs in the transaction of the
    INSERT (an Idempotency-Key is stored there, committed with the row).
    """
    ft_id = new_id()
    directory = ft_dir(state, ft_id)
    inputs = directory / ft_runner.INPUTS_DIR
    inputs.mkdir(parents=True)
    data_name = "dataset" + (".jsonl" if dataset.suffix == ".jsonl" else ".json")
    shutil.copyfile(dataset, inputs / data_name)
    sandbox = isolation.workload_sandbox({"disk_size": DISK_SIZE_GB}, state.settings, user_id)
    sandbox["shared"] = sorted({*sandbox["shared"], *(str(p) for p in shared)})
    spec: dict[str, Any] = {
        "job_id": tag_of(ft_id),
        "source": "command",
        "output_paths": [f"/workspace/{OUTPUT_DIR}"],
        "timeout_minutes": TIMEOUT_MINUTES,
        "timeout_seconds": TIMEOUT_MINUTES * 60,
        "max_retries": 0,
        "log_cap_bytes": state.settings.log_cap_bytes,
        "sandbox": sandbox,
        "hf_hub_cache": str(finetune_catalog.hub_cache(state.settings)),
        "use_spot": bool(fields.get("use_spot", True)),
    }
    root = workspace_root(spec, directory)
    config = dict(fields["config"])
    trainer_config = {
        "base_model": fields["base_model"],
        "dataset_path": f"{root}/{ft_runner.WORKSPACE_INPUTS}/{data_name}",
        "dataset_format": fields["dataset_format"],
        "config": {k: v for k, v in config.items() if k not in ("seed", "max_steps")},
        "output_dir": f"{root}/{OUTPUT_DIR}",
        "progress_path": f"{root}/{OUTPUT_DIR}/{PROGRESS_FILE}",
        "seed": config.get("seed", 3407),
        "max_steps": config.get("max_steps"),
    }
    write_json_atomic(inputs / "config.json", trainer_config)
    config_path = f"{root}/{ft_runner.WORKSPACE_INPUTS}/config.json"
    spec["command"] = f'"$DUMONT_PYTHON" -I {finetune_catalog.TRAINER} {config_path}'
    write_json_atomic(directory / runner.SPEC_FILE, spec)
    now = time.time()
    with _lock, state.store.tx() as conn:
        conn.execute(
            "INSERT INTO finetune_jobs (id, user_id, name, status, base_model, dataset_source,"
            " dataset_path, dataset_format, gpu_type, num_gpus, config, preset, created_ts,"
            " executor) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ft_id,
                user_id,
                fields["name"],
                fields["base_model"],
                fields["dataset_source"],
                fields["dataset_path"],
                fields["dataset_format"],
                fields["gpu_type"],
                fields["num_gpus"],
                dumps({**config, "output_dir": f"/workspace/{OUTPUT_DIR}"}),
                fields.get("preset"),
                now,
                executor_name(state.settings),
            ),
        )
        if on_insert is not None:
            inserted = conn.execute("SELECT * FROM finetune_jobs WHERE id = ?", (ft_id,))
            on_insert(conn, finetune_view(inserted.fetchone()))
    with _lock:
        start_queued(state, user_id)
    row = get_row(state, user_id, ft_id)
    if row is None:
        raise RuntimeError(f"fine-tune {ft_id} is not in the database right after its insert")
    return finetune_view(row)


def start_queued(state: AppState, user_id: int) -> None:
    """Start the user's pending fine-tunes, oldest first, while fewer than
    `max_running_finetunes` of theirs are queued or running. Hold `_lock`."""
    active = state.store.query_one(
        "SELECT COUNT(*) AS n FROM finetune_jobs WHERE user_id = ? AND status IN (?, ?)",
        (user_id, *ACTIVE),
    )
    free = state.settings.max_running_finetunes - (int(active["n"]) if active else 0)
    if free <= 0:
        return
    pending = state.store.query(
        "SELECT id FROM finetune_jobs WHERE user_id = ? AND status = 'pending'"
        " ORDER BY created_ts, rowid LIMIT ?",
        (user_id, free),
    )
    for row in pending:
        launch(state, str(row["id"]))


def launch(state: AppState, ft_id: str) -> None:
    """Claim a pending fine-tune and start its runner (status `queued`). Hold `_lock`."""
    with state.store.tx() as conn:
        claimed = conn.execute(
            "UPDATE finetune_jobs SET status = 'queued' WHERE id = ? AND status = 'pending'",
            (ft_id,),
        ).rowcount
    if not claimed:
        return
    row = state.store.query_one("SELECT executor FROM finetune_jobs WHERE id = ?", (ft_id,))
    if row is not None and sky_finetunes.handles(row):
        sky_finetunes.launch(state, ft_id)
        return
    local = finetune_catalog.executor_status(state.settings, None)["local"]
    if not local["available"]:
        reasons = "; ".join(local["reasons"])
        finish(state, ft_id, "failed", None, f"No fine-tuning backend available: {reasons}")
        return
    directory = ft_dir(state, ft_id)
    token = uuid.uuid4().hex
    write_json_atomic(
        directory / runner.STATE_FILE, {"token": token, "attempt": 1, "phase": "provisioning"}
    )
    try:
        with open(directory / runner.LOG_FILE, "ab") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dumont_plan.server.provider.ft_runner",
                    str(directory),
                    "--token",
                    token,
                ],
                cwd=directory,
                env=workload_env(tag_of(ft_id)),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
    except OSError as exc:
        finish(state, ft_id, "failed", None, f"could not start the trainer's runner: {exc}")
        return
    _children[ft_id] = proc
    _seen_alive.add(ft_id)
    threading.Thread(target=_pass_when_done, args=(state, proc), daemon=True).start()
    state.store.execute(
        "UPDATE finetune_jobs SET runner_pid = ?, runner_start = ?, runner_token = ?"
        f" WHERE id = ? AND {NOT_FINISHED_SQL}",
        (proc.pid, process_start_time(proc.pid), token, ft_id),
    )


def _pass_when_done(state: AppState, proc: subprocess.Popen[bytes]) -> None:
    proc.wait()
    with contextlib.suppress(Exception):  # the reconciler's next tick does the same work
        reconcile_finetunes(state)


# -- finishing ---------------------------------------------------------------------------------


def finish(
    state: AppState,
    ft_id: str,
    status: str,
    exit_code: int | None,
    error: str | None,
) -> bool:
    """Move a fine-tune to a finished status unless it is finished; True if it moved."""
    now = time.time()
    with state.store.tx() as conn:
        moved = conn.execute(
            "UPDATE finetune_jobs SET status = ?, completed_ts = ?, exit_code = ?,"
            " error_message = COALESCE(?, error_message)"
            f" WHERE id = ? AND {NOT_FINISHED_SQL}",
            (status, now, exit_code, error, ft_id),
        ).rowcount
    return bool(moved)


def runner_alive(row: Row) -> bool:
    return pid_alive(row["runner_pid"], row["runner_start"])


def _reap() -> None:
    for ft_id, proc in list(_children.items()):
        if proc.poll() is not None:
            del _children[ft_id]


def stop_runner(state: AppState, row: Row) -> None:
    """End the runner and every process of the fine-tune's sandbox; keep what it wrote."""
    directory = ft_dir(state, row["id"])
    if runner_alive(row):
        with contextlib.suppress(OSError):
            os.kill(int(row["runner_pid"]), signal.SIGTERM)
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        while time.monotonic() < deadline and runner_alive(row):
            _reap()
            time.sleep(0.02)
    current = read_json(directory / runner.STATE_FILE) or {}
    kill_tagged(tag_of(row["id"]), (row["runner_pid"], current.get("child_pgid")))
    _reap()
    current = read_json(directory / runner.STATE_FILE) or {}
    if current.get("phase") != "finished":
        runner.finalize(directory, read_json(directory / runner.SPEC_FILE) or {})


def cancel(state: AppState, row: Row) -> bool:
    """Cancel a fine-tune unless finished; True if this call did. Its processes are gone after."""
    with _lock:
        moved = finish(state, row["id"], "cancelled", None, None)
        fresh = state.store.query_one("SELECT * FROM finetune_jobs WHERE id = ?", (row["id"],))
    if moved and fresh is not None:
        if sky_finetunes.handles(fresh):
            sky_finetunes.cancel(state, fresh)
        else:
            stop_runner(state, fresh)
    return moved


def delete(state: AppState, row: Row) -> None:
    """Remove a fine-tune that does not train (its row, inputs, outputs and log)."""
    with _lock:
        state.store.execute("DELETE FROM finetune_jobs WHERE id = ?", (row["id"],))
    kill_tagged(tag_of(row["id"]))
    shutil.rmtree(ft_dir(state, row["id"]), ignore_errors=True)


# -- logs and outputs --------------------------------------------------------------------------


def read_logs(state: AppState, row: Row, tail: int) -> str:
    """The last `tail` lines of the fine-tune's log (the trainer's output, secrets masked)."""
    running = row["status"] not in FINISHED
    if running and sky_finetunes.handles(row):
        sky_finetunes.refresh_log(state, row)
    piece = joblog.read_job_log(ft_dir(state, row["id"]), tail, None, running=running)
    return piece.text if isinstance(piece, LogPiece) else ""


def sandbox_of(state: AppState, ft_id: str) -> Sandbox:
    return Sandbox(ft_dir(state, ft_id))


def progress_path(state: AppState, ft_id: str) -> Path | None:
    """The trainer's progress file: in the workspace while it runs, then in the outputs."""
    box = sandbox_of(state, ft_id)
    for path in (
        box.workspace / OUTPUT_DIR / PROGRESS_FILE,
        box.outputs / OUTPUT_DIR / PROGRESS_FILE,
    ):
        if path.is_file():
            return path
    return None


def last_log_line(state: AppState, ft_id: str) -> str:
    """The trainer's last line of output (not the runner's own notes)."""
    piece = joblog.read_tail(ft_dir(state, ft_id) / runner.LOG_FILE, 20, None)
    lines = [ln.strip() for ln in piece.text.splitlines() if ln.strip()]
    mine = [ln for ln in lines if not ln.startswith("[dumont]")]
    return (mine or lines or ["(no output)"])[-1][:500]


# -- reconciliation ----------------------------------------------------------------------------


def reconcile_finetunes(state: AppState) -> None:
    """One supervision pass over the unfinished fine-tunes (the reconciler's tick)."""
    with _lock:
        _reap()
        rows = state.store.query(f"SELECT * FROM finetune_jobs WHERE {NOT_FINISHED_SQL}")
        sky = [row for row in rows if row["status"] != "pending" and sky_finetunes.handles(row)]
        for row in rows:
            if row["status"] != "pending" and not sky_finetunes.handles(row):
                reconcile_one(state, row)
        if sky:
            sky_finetunes.reconcile(state, sky)
        for user_id in dict.fromkeys(int(r["user_id"]) for r in rows):
            start_queued(state, user_id)


def refresh(state: AppState, row: Row) -> None:
    """Read a fine-tune's runner and progress now (what the reconciler's tick does)."""
    if row["status"] not in FINISHED and row["status"] != "pending":
        with _lock:
            if sky_finetunes.handles(row):
                sky_finetunes.refresh(state, row)
            else:
                reconcile_one(state, row)


def sync_progress(state: AppState, row: Row, phase: str | None, finished_too: bool = False) -> None:
    """Copy the trainer's new progress (and `running` once it trains) into the row
    (`finished_too`: also into a finished one, as outputs copied back after a cancel)."""
    fields = read_progress(progress_path(state, row["id"]), row) or {}
    training = fields.pop("training", False) or phase == "running"
    fields.pop("done", None)
    path = fields.get("output_model_path")
    if path:
        directory = ft_dir(state, row["id"])
        host = str(Sandbox(directory).workspace)
        fields["output_model_path"] = path.replace(host, isolation.WORKSPACE, 1)
    if training and row["status"] == "queued":
        fields["status"] = "running"
        fields["started_ts"] = row["started_ts"] or time.time()
    if not fields:
        return
    assignments = ", ".join(f"{name} = ?" for name in fields)
    unfinished = "" if finished_too else f" AND {NOT_FINISHED_SQL}"
    state.store.execute(
        f"UPDATE finetune_jobs SET {assignments} WHERE id = ?{unfinished}",
        (*fields.values(), row["id"]),
    )


def reconcile_one(state: AppState, row: Row) -> None:
    directory = ft_dir(state, row["id"])
    alive = runner_alive(row)
    current = read_json(directory / runner.STATE_FILE)
    if current is not None and current.get("token") != row["runner_token"]:
        current = None
    phase = (current or {}).get("phase")
    sync_progress(state, row, phase)
    result = (current or {}).get("result")
    if alive:
        _seen_alive.add(row["id"])
    if result is None and alive:
        return
    fresh = state.store.query_one("SELECT * FROM finetune_jobs WHERE id = ?", (row["id"],))
    if fresh is None:
        return
    if result is None:  # the runner is gone without a final state
        reason = LOST_WHILE_UP if row["id"] in _seen_alive else LOST_WHILE_DOWN
        kill_tagged(tag_of(row["id"]), ((current or {}).get("child_pgid"),))
        runner.finalize(directory, read_json(directory / runner.SPEC_FILE) or {})
        sync_progress(state, fresh, None)
        finish(state, row["id"], "failed", None, reason)
        return
    code = (current or {}).get("exit_code")
    if result == "cancelled":
        finish(state, row["id"], "cancelled", None, None)
    elif result == "completed" and fresh["output_model_path"]:
        finish(state, row["id"], "completed", code, None)
    else:
        finish(state, row["id"], "failed", code, failure_reason(state, fresh, current or {}))


def failure_reason(state: AppState, row: Row, current: dict[str, Any]) -> str:
    """Why a fine-tune failed: the trainer's reason, else its exit and last line of output."""
    if row["error_message"]:
        return str(row["error_message"])
    code = current.get("exit_code")
    if current.get("result") == "completed":
        return f"the trainer exited without reporting `done`: {last_log_line(state, row['id'])}"
    if code is None and current.get("error"):
        return str(current["error"])
    return f"trainer exited with code {code}: {last_log_line(state, row['id'])}"
