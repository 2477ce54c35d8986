"""`/api/v1/jobs/schedules` (additive): cron schedules of jobs, per user.

A schedule is a job template (the CreateJob body, without hf_token or secrets: a template is
stored, and secrets never are) run at each due time of a cron expression (5 fields, the
`croniter` library) in an IANA timezone. Each run is a job whose `schedule_id` names the
schedule. Pause stops the runs; resume plans the next due time after now (runs missed while
paused are skipped); PATCH changes its cron and/or timezone in place (same id: what `dumont
apply` does when a job's `schedule:` changes); delete forgets the schedule (its jobs stay).
`PATCH /jobs/{id}` moves a waiting (`scheduled`) job's `start_at`. Another user's schedule or
job is a 404, exactly like a missing one. The runs themselves: `provider.schedules`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, field_validator

from dumont_plan.server.context import StateDep, User, UserDep
from dumont_plan.server.idempotency import idempotent_create_in_tx
from dumont_plan.server.provider import job_rows, schedules
from dumont_plan.server.routes.jobs import (
    CreateJobRequest,
    JobOut,
    _bad_field,
    _job_config,
    _own_job,
)
from dumont_plan.spec.schedule import checked_cron, checked_timezone


class CreateScheduleRequest(BaseModel):
    name: str | None = Field(
        None, min_length=1, max_length=100, description="Default: the job template's name."
    )
    cron: str = Field(min_length=1, max_length=100, description="Cron expression (5 fields).")
    timezone: str = Field(
        "UTC", min_length=1, max_length=64, description="IANA timezone, e.g. Europe/Paris."
    )
    job: CreateJobRequest = Field(description="The job each run creates (a CreateJob body).")

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        return checked_cron(value)

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        return checked_timezone(value)


class ChangeScheduleRequest(BaseModel):
    """What PATCH changes in place; a field left out stays."""

    cron: str | None = Field(None, min_length=1, max_length=100, description="Cron (5 fields).")
    timezone: str | None = Field(None, min_length=1, max_length=64, description="IANA timezone.")

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        return None if value is None else checked_cron(value)

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str | None) -> str | None:
        return None if value is None else checked_timezone(value)


class MoveJobRequest(BaseModel):
    start_at: datetime | None = Field(
        description="The new start time (ISO; no offset is UTC); null starts it now."
    )


class ScheduleOut(BaseModel):
    id: str
    name: str
    cron: str
    timezone: str
    paused: bool
    next_run_at: str | None = Field(description="UTC; null while paused.")
    last_run_at: str | None
    last_job_id: str | None
    runs: int = Field(description="Jobs this schedule created.")
    created_at: str
    job: dict[str, Any] = Field(description="The job template (no hf_token, no secrets).")


class ScheduleListOut(BaseModel):
    schedules: list[ScheduleOut]
    total: int


router = APIRouter(prefix="/jobs/schedules", tags=["jobs"])
# `PATCH /jobs/{id}` lives here (routes/jobs.py is full); registered after `jobs.router`.
moves = APIRouter(prefix="/jobs", tags=["jobs"])


def _own(state: StateDep, user: User, schedule_id: str) -> Any:
    row = schedules.get_schedule(state, user.id, schedule_id)
    if row is None:
        raise HTTPException(404, f"Schedule {schedule_id} not found")
    return row


def _missing_body() -> RequestValidationError:
    return RequestValidationError(
        [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}]
    )


def _refuse(field: str, message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", "job", field), "msg": message, "input": None}]
    )


@router.post(
    "", status_code=201, response_model=ScheduleOut, responses={201: {"model": ScheduleOut}}
)
def create_schedule(
    body: CreateScheduleRequest, request: Request, state: StateDep, user: UserDep
) -> Any:
    """Create a schedule: a job from `job` at each due time of `cron` in `timezone`. With an
    `Idempotency-Key`, a repeated request answers the first one's schedule."""
    job = body.job
    for field in ("hf_token", "secrets"):
        if getattr(job, field):
            raise _refuse(
                field,
                f"a schedule stores its job template and {field} is never stored; leave it out"
                " (fetch what the job needs from a public place) or create the job yourself",
            )
    if job.workdir_id is not None:  # uploads are pruned: a later run could find none
        raise _refuse(
            "workdir_id",
            "a schedule cannot ship an uploaded workdir (uploads are pruned); get the code in"
            " the job instead (source git with git_url, or a command that fetches it)",
        )
    if job.start_at is not None:
        raise _refuse("start_at", "a schedule's runs start at its cron times; leave start_at out")
    config, price = _job_config(state, job)
    template = {"config": config, "price_per_hour": price}
    name = body.name or str(config["name"])
    return idempotent_create_in_tx(
        request,
        state,
        user,
        lambda claim: schedules.create_schedule(
            state,
            user.id,
            name,
            body.cron,
            body.timezone,
            template,
            claim.record if claim else None,
        ),
    )


@router.get("", response_model=ScheduleListOut)
def list_schedules(state: StateDep, user: UserDep) -> dict[str, Any]:
    """The user's schedules, oldest first."""
    rows = schedules.list_schedules(state, user.id)
    return {"schedules": [schedules.schedule_view(r) for r in rows], "total": len(rows)}


@router.get("/{schedule_id}", response_model=ScheduleOut)
def get_schedule(schedule_id: str, state: StateDep, user: UserDep) -> Any:
    return schedules.schedule_view(_own(state, user, schedule_id))


@router.post("/{schedule_id}/pause", response_model=ScheduleOut)
def pause_schedule(schedule_id: str, state: StateDep, user: UserDep) -> Any:
    """No run until resumed (a job it already created goes on)."""
    return _set_paused(state, user, schedule_id, True)


@router.post("/{schedule_id}/resume", response_model=ScheduleOut)
def resume_schedule(schedule_id: str, state: StateDep, user: UserDep) -> Any:
    """Runs again from the next due time after now (the ones missed while paused are skipped)."""
    return _set_paused(state, user, schedule_id, False)


def _set_paused(state: StateDep, user: User, schedule_id: str, paused: bool) -> Any:
    row = schedules.set_paused(state, _own(state, user, schedule_id), paused)
    if row is None:
        raise HTTPException(404, f"Schedule {schedule_id} not found")
    return schedules.schedule_view(row)


@router.patch("/{schedule_id}", response_model=ScheduleOut)
def change_schedule(
    schedule_id: str, state: StateDep, user: UserDep, body: ChangeScheduleRequest | None = None
) -> Any:
    """Change the cron expression and/or timezone in place: same id, same job template, same
    runs; an active schedule's next run is recomputed from now. The body is checked after the
    schedule: someone else's id is a 404 whatever the body."""
    own = _own(state, user, schedule_id)
    if body is None:
        raise _missing_body()
    row = schedules.change_schedule(state, own, body.cron, body.timezone)
    if row is None:
        raise HTTPException(404, f"Schedule {schedule_id} not found")
    return schedules.schedule_view(row)


@moves.patch("/{job_id}", response_model=JobOut)
def move_job(
    job_id: str, state: StateDep, user: UserDep, body: MoveJobRequest | None = None
) -> Any:
    """Additive: move a waiting (`scheduled`) job's `start_at` (null: start it now). A job that
    no longer waits is a 400. The body is checked after the job (another's id is a 404)."""
    row = _own_job(state, user, job_id)
    if body is None:
        raise _missing_body()
    start_at, refused = schedules.start_time(state, body.start_at)
    if refused is not None:
        raise _bad_field("start_at", refused, str(body.start_at))
    if row["status"] != "scheduled" or not schedules.move_start(state, row, start_at):
        raise HTTPException(
            400, f"Job {job_id} is no longer scheduled; only a waiting job's start_at can change"
        )
    return job_rows.job_view(_own_job(state, user, job_id))


@router.delete("/{schedule_id}")
def delete_schedule(schedule_id: str, state: StateDep, user: UserDep) -> dict[str, Any]:
    """Forget the schedule; the jobs it created stay (their schedule_id still names it)."""
    schedules.delete_schedule(state, _own(state, user, schedule_id))
    return {"success": True, "message": f"Schedule {schedule_id} deleted"}
