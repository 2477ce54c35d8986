"""Job supervision on the local machine: submit, cancel, and the reconciler's pass.

Each job has a directory `<data_dir>/sandboxes/jobs/<job_id>/` (a `Sandbox`: `workspace/`,
`env/`, `outputs/`, plus `spec.json`, `state.json`, `job.log`) and a detached runner process
(`provider/runner.py`). The database row is the truth for the API; `reconcile_jobs` (every 0.5 s)
copies the runner's `state.json` into it. Every status change is guarded by
`status NOT IN (finished)`, so a finished job (e.g. cancelled) is never updated again.

The runner is identified by (pid, kernel start time) stored in the row, and its state file by a
token given at launch, so after a restart of the control plane a still-running job is re-attached,
and a runner that vanished while the control plane was down is recognised: the job is retried if
`max_retries` allows, else marked failed with "runner lost while the control plane was down".

Environment knob (read by the control plane process):

- `DUMONT_SERVER_TIME_SCALE` (or `ServerSettings.extra["time_scale"]`), default 1: how many
  times faster job timeouts run out. `60` makes one minute of `timeout_minutes` last one second;
  tests use it to see the `timeout` status quickly. Cost is always real wall time.

A job's Hugging Face token and other secrets (`job_secrets.py`) are held only in this process's
memory (to relaunch an interrupted runner) and in the runner's environment, never on disk.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from sqlite3 import Connection, Row
from typing import Any

from dumont_plan.server.context import AppState
from dumont_plan.server.provider import isolation, joblog, ranks, runner, sky_jobs, workdirs
from dumont_plan.server.provider.executors import executor_name
from dumont_plan.server.provider.job_rows import get_row, job_view
from dumont_plan.server.provider.job_secrets import SecretKeeper, split_secrets
from dumont_plan.server.provider.joblog import LogPiece, WholeLog
from dumont_plan.server.provider.sandbox import (
    Sandbox,
    kill_tagged,
    pid_alive,
    process_start_time,
    read_json,
    workload_env,
    write_json_atomic,
)
from dumont_plan.wire import FINISHED_JOB_STATUSES

logger = logging.getLogger("dumont_plan.server.jobs")
FINISHED = FINISHED_JOB_STATUSES
# Called in the transaction that inserts a row, with the object as inserted.
OnInsert = Callable[[Connection, dict[str, Any]], None]
ACTIVE_PHASES = ("provisioning", "starting", "running", "completing")
NOT_FINISHED_SQL = "status NOT IN (" + ", ".join(f"'{s}'" for s in FINISHED) + ")"
WAITING = ("scheduled", "pending")  # not finished, and no runner yet
WAITING_SQL = "status NOT IN ('scheduled', 'pending')"
LOST_WHILE_DOWN = "runner lost while the control plane was down"
SECRETS_LOST = "not started: its hf_token and secrets are not kept across restarts"
LOST_WHILE_UP = "runner process ended unexpectedly"
# Extra time the runner gets past its own deadline before the control plane kills it.
TIMEOUT_GRACE_SECONDS = 5.0
CANCEL_WAIT_SECONDS = 3.0


def new_job_id() -> str:
    return f"job_{uuid.uuid4().hex[:8]}"


def time_scale(state: AppState) -> float:
    raw = state.settings.extra.get("time_scale") or os.environ.get("DUMONT_SERVER_TIME_SCALE")
    try:
        scale = float(raw) if raw else 1.0
    except ValueError:
        return 1.0
    return scale if scale > 0 else 1.0


def job_dir(state: AppState, job_id: str) -> Path:
    return state.settings.sandboxes_dir / "jobs" / job_id


@dataclass
class Supervisor:
    """What this control plane process knows beyond the database."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    seen_alive: set[str] = field(default_factory=set)
    secrets: SecretKeeper = field(default_factory=SecretKeeper)

    def reap(self) -> None:
        for job_id, proc in list(self.children.items()):
            if proc.poll() is not None:
                del self.children[job_id]


_supervisors: dict[str, Supervisor] = {}
_supervisors_lock = threading.Lock()


def supervisor(state: AppState) -> Supervisor:
    key = str(state.settings.data_dir)
    with _supervisors_lock:
        return _supervisors.setdefault(key, Supervisor())


# -- submit / launch --------------------------------------------------------------------------


def submit_job(
    state: AppState,
    user_id: int,
    config: dict[str, Any],
    hf_token: str | None,
    price_per_hour: float,
    on_insert: OnInsert | None = None,
    secrets: dict[str, str] | None = None,
    workdir: Path | None = None,
    start_at: float | None = None,
    schedule_id: str | None = None,
) -> dict[str, Any]:
    """Record a job (status pending, or `scheduled` until `start_at`: `provider.schedules`),
    start its runner, return its view.

    `workdir` (an uploaded archive, `workdirs`) is copied into the job's directory: the runner
    unpacks it into each attempt's fresh workspace.

    `config` holds the validated CreateJob fields (no hf_token) with aliases resolved.
    `on_insert(conn, view)` runs in the transaction that inserts the row (the idempotency key
    is stored there, so the key and the job are committed together).
    """
    now = time.time()
    job_id = new_job_id()
    config, carried = split_secrets(config, secrets)
    timeout_seconds = int(config["timeout_minutes"]) * 60 / time_scale(state)
    spec = {
        **config,
        "job_id": job_id,
        "has_hf_token": bool(hf_token),
        "carries_secrets": carried is not None,
        "timeout_seconds": timeout_seconds,
        "log_cap_bytes": state.settings.log_cap_bytes,
        "sandbox": isolation.workload_sandbox(config, state.settings, user_id),
        "executor": executor_name(state.settings),
    }
    directory = job_dir(state, job_id)
    directory.mkdir(parents=True)
    if workdir is not None:
        shutil.copyfile(workdir, directory / workdirs.WORKDIR_FILE)
    write_json_atomic(directory / runner.SPEC_FILE, spec)
    sup = supervisor(state)
    # Under the supervisor lock from the insert on: the reconciler never sees the pending row
    # before its token is known.
    with sup.lock:
        with state.store.tx() as conn:
            conn.execute(
                "INSERT INTO jobs (id, user_id, name, source, gpu_type, num_gpus, num_nodes,"
                " use_spot, price_per_hour, timeout_minutes, timeout_seconds, max_retries,"
                " has_hf_token, status, attempt, created_ts, start_at, schedule_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
                (
                    job_id,
                    user_id,
                    config["name"],
                    config["source"],
                    config["gpu_type"],
                    config["num_gpus"],
                    int(config.get("num_nodes") or 1),
                    int(config["use_spot"]),
                    price_per_hour,
                    config["timeout_minutes"],
                    timeout_seconds,
                    config["max_retries"],
                    int(bool(hf_token)),
                    "pending" if start_at is None else "scheduled",
                    now,
                    start_at,
                    schedule_id,
                ),
            )
            if on_insert is not None:
                inserted = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
                on_insert(conn, job_view(inserted, now))
        sup.secrets.keep(job_id, hf_token, carried)
        start_queued(state, user_id)
    row = get_row(state, user_id, job_id)
    if row is None:  # jobs are never deleted: only a damaged database loses one
        raise RuntimeError(f"job {job_id} is not in the database right after its insert")
    return job_view(row)


def start_queued(state: AppState, user_id: int) -> None:
    """Start the user's pending jobs, oldest first, while fewer than `max_running_jobs` of
    theirs run; the others wait in `pending`. Hold the supervisor lock."""
    running = state.store.query_one(
        f"SELECT COUNT(*) AS n FROM jobs WHERE user_id = ? AND {WAITING_SQL}"
        f" AND {NOT_FINISHED_SQL}",
        (user_id,),
    )
    free = state.settings.max_running_jobs - (int(running["n"]) if running else 0)
    if free <= 0:
        return
    queued = state.store.query(
        "SELECT id FROM jobs WHERE user_id = ? AND status = 'pending'"
        " ORDER BY created_ts, rowid LIMIT ?",
        (user_id, free),
    )
    for row in queued:
        claim_and_launch(state, row["id"])


def claim_and_launch(state: AppState, job_id: str) -> None:
    """Start the runner of a pending job, once (the claim is atomic). Hold the supervisor lock."""
    with state.store.tx() as conn:
        claimed = conn.execute(
            "UPDATE jobs SET status = 'provisioning' WHERE id = ? AND status = 'pending'",
            (job_id,),
        ).rowcount
    if not claimed:
        return
    spec = read_json(job_dir(state, job_id) / runner.SPEC_FILE) or {}
    if supervisor(state).secrets.missing(job_id, spec):  # queued before a restart
        finish(state, job_id, "failed", time.time(), None, SECRETS_LOST)
        return
    launch(state, job_id, attempt=1)


def launch(state: AppState, job_id: str, attempt: int) -> None:
    """Spawn a runner for `attempt` of a job. Hold the supervisor lock."""
    sup = supervisor(state)
    directory = job_dir(state, job_id)
    spec = read_json(directory / runner.SPEC_FILE) or {}
    if sky_jobs.handles(spec):
        sky_jobs.launch(state, job_id, directory, attempt, sup.secrets.env(job_id))
        return
    token = uuid.uuid4().hex
    previous = read_json(directory / runner.STATE_FILE) or {}
    write_json_atomic(
        directory / runner.STATE_FILE,
        {
            "token": token,
            "attempt": attempt,
            "phase": "provisioning",
            "started": previous.get("started"),
        },
    )
    extra = sup.secrets.env(job_id)
    try:
        with open(directory / runner.LOG_FILE, "ab") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dumont_plan.server.provider.runner",
                    str(directory),
                    "--token",
                    token,
                    "--attempt",
                    str(attempt),
                    *ranks.launch_args(spec),
                ],
                cwd=directory,
                env=workload_env(job_id, extra),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
    except OSError as exc:
        finish(state, job_id, "failed", time.time(), None, f"could not start the runner: {exc}")
        return
    sup.children[job_id] = proc
    # When the runner ends, a pass at once: a queued job takes its place without waiting a tick.
    threading.Thread(target=_pass_when_done, args=(state, proc), daemon=True).start()
    sup.seen_alive.add(job_id)
    with state.store.tx() as conn:
        conn.execute(
            f"UPDATE jobs SET runner_pid = ?, runner_start = ?, runner_token = ?, attempt = ?"
            f" WHERE id = ? AND {NOT_FINISHED_SQL}",
            (proc.pid, process_start_time(proc.pid), token, attempt, job_id),
        )


def _pass_when_done(state: AppState, proc: subprocess.Popen[bytes]) -> None:
    proc.wait()
    try:
        reconcile_jobs(state)
    except Exception:  # the reconciler's next tick does the same work
        logger.exception("job pass after a runner ended failed")


# -- finishing ----------------------------------------------------------------------------------


def finish(
    state: AppState,
    job_id: str,
    status: str,
    ended: float,
    exit_code: int | None,
    error: str | None,
    started: float | None = None,
    attempt: int | None = None,
) -> bool:
    """Move a job to a finished status unless it is finished already; True if it moved."""
    with state.store.tx() as conn:
        moved = conn.execute(
            "UPDATE jobs SET status = ?, completed_ts = ?, exit_code = ?, error_message = ?,"
            " started_ts = COALESCE(started_ts, ?), attempt = COALESCE(?, attempt)"
            f" WHERE id = ? AND {NOT_FINISHED_SQL}",
            (status, ended, exit_code, error, started, attempt, job_id),
        ).rowcount
    supervisor(state).secrets.forget(job_id)
    return bool(moved)


def runner_alive(row: Row) -> bool:
    return pid_alive(row["runner_pid"], row["runner_start"])


def stop_runner(state: AppState, row: Row) -> None:
    """End a job's runner and every process of its sandbox; keep outputs if the runner could not."""
    sup = supervisor(state)
    directory = job_dir(state, row["id"])
    if sky_jobs.handles(read_json(directory / runner.SPEC_FILE) or {}):
        sky_jobs.cancel(state, row["id"], directory)
        return
    if runner_alive(row):
        with contextlib.suppress(OSError):
            os.kill(int(row["runner_pid"]), signal.SIGTERM)
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        while time.monotonic() < deadline:
            sup.reap()
            if not runner_alive(row):
                break
            time.sleep(0.02)
    current = read_json(directory / runner.STATE_FILE) or {}
    kill_tagged(row["id"], (row["runner_pid"], *ranks.pgids(current)))
    sup.reap()
    current = read_json(directory / runner.STATE_FILE) or {}
    if current.get("token") != row["runner_token"] or current.get("phase") != "finished":
        runner.finalize(directory)


def cancel_job(state: AppState, row: Row) -> bool:
    """Cancel a job unless finished; True if this call cancelled it. Stops its processes."""
    sup = supervisor(state)
    with sup.lock:
        moved = finish(state, row["id"], "cancelled", time.time(), None, None)
        fresh = state.store.query_one("SELECT * FROM jobs WHERE id = ?", (row["id"],))
    if moved and fresh is not None:
        stop_runner(state, fresh)
    return moved


# -- logs and outputs -----------------------------------------------------------------------------


def read_logs(
    state: AppState, row: Row, tail: int | None, offset: int | None, rank: int = 0
) -> LogPiece | WholeLog:
    """Rank `rank`'s log (rank 0's is the job's own `job.log`)."""
    running = row["status"] not in FINISHED
    directory = job_dir(state, row["id"])
    if running and sky_jobs.handles(read_json(directory / runner.SPEC_FILE) or {}):
        sky_jobs.refresh_log(state, row["id"], directory)
    name = ranks.log_name(rank)
    return joblog.read_job_log(directory, tail, offset, running=running, name=name)


def job_sandbox(state: AppState, job_id: str) -> Sandbox:
    return Sandbox(job_dir(state, job_id))


# -- reconciliation ----------------------------------------------------------------------------


def reconcile_jobs(state: AppState) -> None:
    """One supervision pass over the unfinished jobs (called by the reconciler loop)."""
    sup = supervisor(state)
    with sup.lock:
        sup.reap()
        rows = state.store.query(f"SELECT * FROM jobs WHERE {NOT_FINISHED_SQL}")
        sky: list[Row] = []
        for row in rows:
            if row["status"] in WAITING:
                continue
            if sky_jobs.handles(read_json(job_dir(state, row["id"]) / runner.SPEC_FILE) or {}):
                sky.append(row)
            else:
                reconcile_one(state, row)
        if sky:
            sky_jobs.reconcile(state, sky, lambda job_id: job_dir(state, job_id))
        # Then the queues: a job that just finished frees its place in this same pass.
        for user_id in dict.fromkeys(r["user_id"] for r in rows if r["status"] == "pending"):
            start_queued(state, int(user_id))


def reconcile_one(state: AppState, row: Row) -> None:
    sup = supervisor(state)
    job_id = row["id"]
    directory = job_dir(state, job_id)
    alive = runner_alive(row)
    current = read_json(directory / runner.STATE_FILE)
    if current is not None and current.get("token") != row["runner_token"]:
        current = None
    if current is not None and current.get("result") in FINISHED:
        ended = float(current.get("ended") or 0)
        if alive and job_id in sup.children and time.time() - ended < TIMEOUT_GRACE_SECONDS:
            return  # the runner is exiting: the pass at its exit finishes the job (its place
            # in the user's queue is free only once its process is gone)
        finish(
            state,
            job_id,
            str(current["result"]),
            float(current.get("ended") or time.time()),
            current.get("exit_code"),
            current.get("error"),
            current.get("started"),
            current.get("attempt"),
        )
        return
    if alive:
        sup.seen_alive.add(job_id)
        if current is not None:
            sync_progress(state, row, current)
            if past_deadline(row, current):
                kill_tagged(job_id, ranks.pgids(current))
                runner.finalize(directory)
                minutes = row["timeout_minutes"]
                finish(
                    state,
                    job_id,
                    "timeout",
                    time.time(),
                    None,
                    f"Job exceeded its timeout of {minutes} minutes",
                    current.get("started"),
                )
        return
    lost(state, row, current)


def sync_progress(state: AppState, row: Row, current: dict[str, Any]) -> None:
    phase = current.get("phase")
    status = phase if phase in ACTIVE_PHASES else row["status"]
    attempt = int(current.get("attempt") or row["attempt"])
    started = current.get("started")
    if (status, attempt, started) == (row["status"], row["attempt"], row["started_ts"]):
        return
    with state.store.tx() as conn:
        conn.execute(
            "UPDATE jobs SET status = ?, attempt = ?, started_ts = ?"
            f" WHERE id = ? AND {NOT_FINISHED_SQL}",
            (status, attempt, started, row["id"]),
        )


def past_deadline(row: Row, current: dict[str, Any]) -> bool:
    started = current.get("attempt_started")
    if started is None or current.get("phase") not in ("starting", "running"):
        return False
    limit = float(row["timeout_seconds"])
    return time.time() > float(started) + limit + TIMEOUT_GRACE_SECONDS


def lost(state: AppState, row: Row, current: dict[str, Any] | None) -> None:
    """The runner is gone without a final state: retry if allowed, else fail with the reason."""
    sup = supervisor(state)
    job_id = row["id"]
    directory = job_dir(state, job_id)
    kill_tagged(job_id, ranks.pgids(current))
    reason = LOST_WHILE_UP if job_id in sup.seen_alive else LOST_WHILE_DOWN
    attempt = int((current or {}).get("attempt") or row["attempt"] or 1)
    max_attempts = int(row["max_retries"]) + 1
    token_missing = sup.secrets.missing(job_id, read_json(directory / runner.SPEC_FILE) or {})
    note = joblog.LogWriter(directory / runner.LOG_FILE, [])
    try:
        if attempt < max_attempts and not token_missing:
            note.note(f"attempt {attempt} interrupted: {reason}; retrying")
            launch(state, job_id, attempt + 1)
            return
        if attempt < max_attempts:
            reason += "; not retried: the hf_token and secrets are not kept across restarts"
        note.note(f"job failed: {reason}")
    finally:
        note.close()
    runner.finalize(directory)
    finish(state, job_id, "failed", time.time(), None, reason, (current or {}).get("started"))
