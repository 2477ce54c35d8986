"""How a job with `schedule:` is planned (`kinds.job` asks; pure, no I/O).

The remote object depends on the schedule:

- `schedule: {at}`: a job created with `start_at`; it waits in status `scheduled`. Moving
  `at` while it waits is an update (`PATCH /jobs/{id}`); once it started, a changed `at` is
  only recorded (`--replace` runs it again). Otherwise it is a run-once job like any other.
- `schedule: {cron, tz}`: a schedule (`/jobs/schedules`, id `sch_…`) whose runs are jobs
  linked to it. It is long-lived, not run-once: it never finishes, `run_policy` and `wait` do
  not apply. A new cron or tz is an update in place (`PATCH`, same id); a changed job template
  (command, image …) replaces the schedule (its past runs stay); gone from the server: made
  again; paused out of band: left paused (noop, drift `paused`) so that an operator's pause
  holds until `dumont job schedules resume`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from dumont_plan.kinds.base import parse_time
from dumont_plan.kinds.decision import Action, Decision, FieldChange, Situation
from dumont_plan.spec.schedule import local_text, next_run
from dumont_plan.wire_models import Job, JobSchedule

# A start this far in the past is still accepted by the control plane (it starts at once).
START_GRACE = timedelta(seconds=60)


def schedule_of(values: Mapping[str, Any]) -> dict[str, Any]:
    """The desired `schedule` ({} when none)."""
    found = values.get("schedule")
    return dict(found) if isinstance(found, Mapping) else {}


def when_text(values: Mapping[str, Any], now: datetime) -> str | None:
    """`next run 2026-12-06 02:00 Europe/Paris` or `starts 2026-12-05 02:00 UTC`."""
    wanted = schedule_of(values)
    if wanted.get("cron"):
        tz = str(wanted.get("tz") or "UTC")
        return f"next run {local_text(next_run(str(wanted['cron']), tz, now), tz)}"
    at = parse_time(wanted.get("at"))
    return f"starts {local_text(at, 'UTC')}" if at is not None else None


def start_problem(values: Mapping[str, Any], now: datetime) -> str | None:
    """Why a new run of these values cannot be sent (a past `at`), or None."""
    at = parse_time(schedule_of(values).get("at"))
    if at is None or at >= now - START_GRACE:
        return None
    return (
        f"schedule.at {local_text(at, 'UTC')} is in the past (now {local_text(now, 'UTC')}); "
        "give a later time, or remove `schedule` to start at once"
    )


def echoed(live: Job) -> dict[str, Any]:
    """What the server says of the schedule: a schedule's cron and tz, a waiting job's time."""
    if isinstance(live, JobSchedule):
        return {"schedule": {"cron": live.cron, "tz": live.timezone}}
    at = parse_time(live.raw.get("start_at"))
    if live.status == "scheduled" and at is not None:
        return {"schedule": {"at": at.strftime("%Y-%m-%dT%H:%M:%SZ")}}
    return {}


def _words(changes: Sequence[FieldChange]) -> str:
    return ", ".join("workdir changed" if c.field == "workdir_sha256" else c.field for c in changes)


def decide_cron(s: Situation[Job]) -> Decision:
    """A job whose spec or live object is a cron schedule (see the module doc)."""
    wanted = schedule_of(s.values)
    live = s.live
    cron = wanted.get("cron")
    if live is None:
        return Decision(Action.create, "the schedule is gone from the server; made again", "gone")
    if not isinstance(live, JobSchedule):
        status = live.status
        why = f"schedule.cron added: a cron schedule replaces the job ({status})"
        if not live.is_finished and status != "scheduled" and not s.allow_restart:
            return Decision(
                Action.noop,
                status,
                error=(
                    f"{s.address} is {status} and would be cancelled to become a cron schedule; "
                    "re-run with --allow-restart, or wait until it finishes"
                ),
            )
        return Decision(Action.replace, why)
    if not cron:
        then = "waits for schedule.at" if wanted.get("at") else "runs once"
        return Decision(
            Action.replace,
            f"schedule.cron removed: schedule {live.id} is deleted (its runs stay), the job {then}",
        )
    if s.forced_replace:
        return Decision(Action.replace, f"--replace: a new schedule replaces {live.id}")
    template = [c for c in s.changes if c.field != "schedule"]
    if template:
        return Decision(
            Action.replace,
            f"job template changed ({_words(template)}): a new schedule replaces {live.id} "
            "(its runs stay)",
        )
    tz = str(wanted.get("tz") or "UTC")
    if any(c.field == "schedule" for c in s.changes):
        due = local_text(next_run(str(cron), tz, s.now or datetime.now(UTC)), tz)
        notes = ["paused: it stays paused after the change"] if live.paused else []
        return Decision(Action.update, f"schedule changed in place; next run {due}", notes=notes)
    if live.paused:
        return Decision(
            Action.noop,
            "paused",
            drift="paused",
            notes=[
                f"paused out of band: no run until `dumont job schedules resume {live.id}`; "
                "apply leaves it paused"
            ],
        )
    due_at = parse_time(live.next_run_at)
    due = (
        local_text(due_at, tz)
        if due_at
        else local_text(next_run(str(cron), tz, s.now or datetime.now(UTC)), tz)
    )
    return Decision(Action.noop, f"next run {due}")


def decide_waiting(s: Situation[Job], policy: str) -> Decision | None:
    """A job waiting for its `at` (status `scheduled`): a moved `at` is an update; a changed
    job is replaced without --allow-restart (nothing ran yet). None: the run-once table."""
    live = s.live
    if live is None or live.status != "scheduled":
        return None
    others = [c for c in s.changes if c.field != "schedule"]
    moved = len(others) < len(s.changes)
    if s.forced_replace or (others and policy != "once"):
        why = "--replace" if s.forced_replace else f"spec changed ({_words(others)})"
        return Decision(Action.replace, f"{why}; cancels the waiting run (it has not started)")
    if not moved:
        return None
    at = schedule_of(s.values).get("at")
    notes = []
    if others:
        notes.append(f"spec changed ({_words(others)}) while scheduled; run_policy once keeps it")
    if at is None:
        return Decision(Action.update, "schedule removed: the waiting job starts now", notes=notes)
    when = parse_time(at)
    shown = local_text(when, "UTC") if when else str(at)
    return Decision(Action.update, f"start moved in place; starts {shown}", notes=notes)
