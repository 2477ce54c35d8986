"""Scheduled jobs: a job created with a `start_at` waits in status `scheduled` until the policy
clock (`AppState.clock`) reaches it; the reconciler's pass then moves it to `pending`, where the
user's queue starts it like any other job.

Restart policy (run once late): the row is the only record of a waiting job, so a control plane
that was down when a job became due releases it on its first pass after it starts again: the job
runs once, late. The release is one conditional UPDATE (`status = 'scheduled'` to `pending`), so
no pass, however many run, starts it twice. A scheduled job's hf_token and secrets live only in
this process's memory (never on disk): one that was due after a restart fails with the reason,
like a queued job.
"""

from __future__ import annotations

from datetime import UTC, datetime

from dumont_plan.server.context import AppState
from dumont_plan.server.provider import jobs

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
        for user_id in release_due(state):
            jobs.start_queued(state, user_id)


# -- cron schedules ------------------------------------------------------------------------------
