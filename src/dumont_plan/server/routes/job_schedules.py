"""`/api/v1/jobs/schedules` (additive): cron schedules of jobs, per user.

A schedule is a job template (the CreateJob body, without hf_token or secrets: a template is
stored, and secrets never are) run at each due time of a cron expression (5 fields, the
`croniter` library) in an IANA timezone. Each run is a job whose `schedule_id` names the
schedule. Pause stops the runs; resume plans the next due time after now (runs missed while
paused are skipped); delete forgets the schedule (its jobs stay). Another user's schedule is a
404, exactly like a missing one. The runs themselves: `provider.schedules`.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, field_validator

from dumont_plan.server.context import StateDep, User, UserDep
from dumont_plan.server.provider import schedules
from dumont_plan.server.routes.jobs import CreateJobRequest, _job_config

CRON_HELP = (
    "five fields: minute hour day-of-month month day-of-week, e.g. '0 2 * * *' (every day at"
    " 02:00) or '*/15 * * * *' (every 15 minutes)"
)


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
        value = " ".join(value.split())
        if len(value.split()) != 5 or not schedules.valid_cron(value):
            raise ValueError(f"{value!r} is not a cron expression; use {CRON_HELP}")
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r}; use an IANA name such as UTC or Europe/Paris"
            ) from None
        return value


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


def _own(state: StateDep, user: User, schedule_id: str) -> Any:
    row = schedules.get_schedule(state, user.id, schedule_id)
    if row is None:
        raise HTTPException(404, f"Schedule {schedule_id} not found")
    return row


def _refuse(field: str, message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", "job", field), "msg": message, "input": None}]
    )


@router.post(
    "", status_code=201, response_model=ScheduleOut, responses={201: {"model": ScheduleOut}}
)
def create_schedule(body: CreateScheduleRequest, state: StateDep, user: UserDep) -> Any:
    """Create a schedule: a job from `job` at each due time of `cron` in `timezone`."""
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
    return schedules.create_schedule(state, user.id, name, body.cron, body.timezone, template)


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
    row = schedules.set_paused(state, _own(state, user, schedule_id), True)
    if row is None:
        raise HTTPException(404, f"Schedule {schedule_id} not found")
    return schedules.schedule_view(row)


@router.post("/{schedule_id}/resume", response_model=ScheduleOut)
def resume_schedule(schedule_id: str, state: StateDep, user: UserDep) -> Any:
    """Runs again from the next due time after now (the ones missed while paused are skipped)."""
    row = schedules.set_paused(state, _own(state, user, schedule_id), False)
    if row is None:
        raise HTTPException(404, f"Schedule {schedule_id} not found")
    return schedules.schedule_view(row)


@router.delete("/{schedule_id}")
def delete_schedule(schedule_id: str, state: StateDep, user: UserDep) -> dict[str, Any]:
    """Forget the schedule; the jobs it created stay (their schedule_id still names it)."""
    schedules.delete_schedule(state, _own(state, user, schedule_id))
    return {"success": True, "message": f"Schedule {schedule_id} deleted"}
