"""Scheduled jobs: a job created with a `start_at` waits in status `scheduled` until the policy
clock (`AppState.clock`) reaches it; the reconciler's pass then moves it to `pending`, where the
user's queue starts it like any other job. A cron schedule (`job_schedules` row: a cron
expression in a timezone and a job template) creates a job, linked by `schedule_id`, at each
due time.

Restart policy (run once late): the row is the only record of a waiting job, so a control plane
that was down when a job became due releases it on its first pass after it starts again: the job
runs once, late. The release is one conditional UPDATE (`status = 'scheduled'` to `pending`), so
no pass, however many run, starts it twice. A scheduled job's hf_token and secrets live only in
this process's memory (never on disk): one that was due after a restart fails with the reason,
like a queued job. A cron schedule keeps its next due time in its row: a pass past it creates
one job and moves the next due time past now, in the job's insert transaction, so the runs
missed while the control plane was down become one run, late, and none is doubled. A schedule's
template holds no hf_token or secrets (they are never stored).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from sqlite3 import Connection, Row
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from dumont_plan.server.context import AppState
from dumont_plan.server.provider import jobs
from dumont_plan.server.provider.job_rows import utc_iso
from dumont_plan.server.provider.market import job_hourly_price

# A `start_at` this many seconds past starts at once (the client's clock may lag); older is a 422.
START_AT_GRACE = 60.0


def start_time(state: AppState, start_at: datetime | None) -> tuple[float | None, str | None]:
    """A CreateJob's `start_at` as policy-clock seconds (None: start now), or why it is refused.
    A time without an offset is UTC, like the API's own times."""
    if start_at is None:
        return None, None
    when = (start_at if start_at.tzinfo else start_at.replace(tzinfo=UTC)).timestamp()
    now = state.clock.now()
    if when > now:
        return when, None
    if when >= now - START_AT_GRACE:
        return None, None
    current = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
    return None, (
        f"start_at {start_at.isoformat()} is in the past (now is {current}); give a later"
        " time, or leave start_at out to start now"
    )


def release_due(state: AppState) -> list[int]:
    """Move every scheduled job whose time has come to `pending`; the users who had one."""
    now = state.clock.now()
    with state.store.tx() as conn:
        due = conn.execute(
            "SELECT id, user_id FROM jobs WHERE status = 'scheduled' AND start_at <= ?", (now,)
        ).fetchall()
        released = [
            row
            for row in due
            if conn.execute(
                "UPDATE jobs SET status = 'pending' WHERE id = ? AND status = 'scheduled'",
                (row["id"],),
            ).rowcount
        ]
    return list(dict.fromkeys(int(row["user_id"]) for row in released))


def reconcile_schedules(state: AppState) -> None:
    """The reconciler's pass: release the due jobs and start them (within each user's limit)."""
    sup = jobs.supervisor(state)
    with sup.lock:
        run_due_schedules(state)
        for user_id in release_due(state):
            jobs.start_queued(state, user_id)


# -- cron schedules ------------------------------------------------------------------------------


def next_run(cron: str, timezone: str, after: float) -> float:
    """The first due time of `cron` in `timezone` strictly after `after` (epoch seconds)."""
    start = datetime.fromtimestamp(after, ZoneInfo(timezone))
    due: datetime = croniter(cron, start).get_next(datetime)
    return due.timestamp()


def new_schedule_id() -> str:
    return f"sch_{uuid.uuid4().hex[:8]}"


def create_schedule(
    state: AppState,
    user_id: int,
    name: str,
    cron: str,
    timezone: str,
    template: dict[str, Any],
    record: Callable[[Connection, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Record a schedule (its template is a job's stored configuration plus its price);
    `record(conn, answer)` runs in the insert's transaction (an Idempotency-Key's claim)."""
    schedule_id = new_schedule_id()
    now = state.clock.now()
    with jobs.supervisor(state).lock, state.store.tx() as conn:
        conn.execute(
            "INSERT INTO job_schedules (id, user_id, name, cron, timezone, template, paused,"
            " next_run_ts, created_ts) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
            (
                schedule_id,
                user_id,
                name,
                cron,
                timezone,
                json.dumps(template),
                next_run(cron, timezone, now),
                time.time(),
            ),
        )
        row = conn.execute("SELECT * FROM job_schedules WHERE id = ?", (schedule_id,)).fetchone()
        answer = schedule_view(row)
        if record is not None:
            record(conn, answer)
    return answer


def get_schedule(state: AppState, user_id: int, schedule_id: str) -> Row | None:
    return state.store.query_one(
        "SELECT * FROM job_schedules WHERE id = ? AND user_id = ?", (schedule_id, user_id)
    )


def list_schedules(state: AppState, user_id: int) -> list[Row]:
    return state.store.query(
        "SELECT * FROM job_schedules WHERE user_id = ? ORDER BY created_ts, rowid", (user_id,)
    )


def set_paused(state: AppState, row: Row, paused: bool) -> Row | None:
    """Pause (no run until resumed) or resume (the next due time after now: the runs missed
    while paused are skipped)."""
    next_ts = None if paused else next_run(row["cron"], row["timezone"], state.clock.now())
    with jobs.supervisor(state).lock, state.store.tx() as conn:
        conn.execute(
            "UPDATE job_schedules SET paused = ?, next_run_ts = ? WHERE id = ?",
            (int(paused), next_ts, row["id"]),
        )
    return get_schedule(state, int(row["user_id"]), row["id"])  # None: deleted meanwhile


def change_schedule(
    state: AppState, row: Row, cron: str | None, timezone: str | None
) -> Row | None:
    """Change the cron expression and/or timezone in place (same id, same template, same
    runs): an active schedule's next due time is recomputed from now (a paused one stays
    paused)."""
    cron = cron or row["cron"]
    timezone = timezone or row["timezone"]
    next_ts = None if row["paused"] else next_run(cron, timezone, state.clock.now())
    with jobs.supervisor(state).lock, state.store.tx() as conn:
        conn.execute(
            "UPDATE job_schedules SET cron = ?, timezone = ?, next_run_ts = ? WHERE id = ?",
            (cron, timezone, next_ts, row["id"]),
        )
    return get_schedule(state, int(row["user_id"]), row["id"])  # None: deleted meanwhile


def move_start(state: AppState, row: Row, start_at: float | None) -> bool:
    """Move a waiting job's start time (None: start now, on the next pass). False when the
    job no longer waits (it started, or was cancelled, meanwhile)."""
    when = state.clock.now() if start_at is None else start_at
    with jobs.supervisor(state).lock, state.store.tx() as conn:
        moved = conn.execute(
            "UPDATE jobs SET start_at = ? WHERE id = ? AND status = 'scheduled'",
            (when, row["id"]),
        ).rowcount
    if moved and start_at is None:
        reconcile_schedules(state)
    return bool(moved)


def delete_schedule(state: AppState, row: Row) -> None:
    """Forget the schedule; the jobs it created stay (their `schedule_id` still names it)."""
    with jobs.supervisor(state).lock, state.store.tx() as conn:
        conn.execute("DELETE FROM job_schedules WHERE id = ?", (row["id"],))


def schedule_view(row: Row) -> dict[str, Any]:
    template = json.loads(row["template"])
    return {
        "id": row["id"],
        "name": row["name"],
        "cron": row["cron"],
        "timezone": row["timezone"],
        "paused": bool(row["paused"]),
        "next_run_at": utc_iso(row["next_run_ts"]),
        "last_run_at": utc_iso(row["last_run_ts"]),
        "last_job_id": row["last_job_id"],
        "runs": int(row["runs"]),
        "created_at": utc_iso(row["created_ts"]),
        "job": template["config"],
    }


def run_due_schedules(state: AppState) -> None:
    """Create one job for every schedule that is due. Hold the supervisor lock."""
    now = state.clock.now()
    due = state.store.query(
        "SELECT * FROM job_schedules WHERE paused = 0 AND next_run_ts <= ?", (now,)
    )
    for row in due:
        run_schedule(state, row, now)


def run_schedule(state: AppState, row: Row, now: float) -> None:
    template = json.loads(row["template"])
    config = dict(template["config"])
    price = float(template["price_per_hour"])
    if config.get("offer_id") is None:  # priced like a job created now
        settings = state.settings
        price = job_hourly_price(
            config["gpu_type"],
            bool(config["use_spot"]),
            time.time(),
            num_gpus=int(config["num_gpus"]),
            seed=settings.market_seed,
            size=settings.market_size,
        )
    following = next_run(row["cron"], row["timezone"], now)

    def advance(conn: Connection, job: dict[str, Any]) -> None:
        conn.execute(
            "UPDATE job_schedules SET next_run_ts = ?, last_run_ts = ?, last_job_id = ?,"
            " runs = runs + 1 WHERE id = ?",
            (following, now, job["id"], row["id"]),
        )

    jobs.submit_job(state, int(row["user_id"]), config, None, price, advance, schedule_id=row["id"])
