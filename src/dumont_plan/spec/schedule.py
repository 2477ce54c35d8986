"""`schedule:` of a job: a one-off start time (`at`) or a cron expression in a timezone.

    schedule: {at: "2026-12-05T02:00Z"}                  # the job waits `scheduled` until then
    schedule: {cron: "0 2 * * *", tz: Europe/Paris}      # a schedule whose runs are jobs

Cron expressions are read by `croniter` (5 fields), timezones by `zoneinfo` (IANA names).
`next_run` is what the plan shows ("next run 2026-12-06 02:00 Europe/Paris"). croniter is
imported when a cron is read, not when the spec package is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from dumont_plan.spec.common import SpecModel

CRON_HELP = (
    "five fields: minute hour day-of-month month day-of-week, e.g. '0 2 * * *' (every day at "
    "02:00) or '*/15 * * * *' (every 15 minutes)"
)
AT_EXAMPLE = '"2026-12-05T02:00Z"'


def canonical_time(value: str | datetime) -> str:
    """An ISO time as `YYYY-MM-DDTHH:MM:SSZ` in UTC (no offset means UTC); ValueError if bad."""
    when = value if isinstance(value, datetime) else datetime.fromisoformat(value.strip())
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def checked_cron(value: str) -> str:
    from croniter import croniter

    value = " ".join(value.split())
    if len(value.split()) != 5 or not croniter.is_valid(value):
        raise ValueError(f"{value!r} is not a cron expression; use {CRON_HELP}")
    return value


def checked_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{value!r} is not a timezone; use an IANA name such as UTC, "
            "Europe/Paris or America/New_York"
        ) from None
    return value


def next_run(cron: str, tz: str, after: datetime) -> datetime:
    """The first due time of `cron` in `tz` strictly after `after` (aware, in `tz`)."""
    from croniter import croniter

    due: datetime = croniter(cron, after.astimezone(ZoneInfo(tz))).get_next(datetime)
    return due


def local_text(when: datetime, tz: str) -> str:
    """`2026-12-06 02:00 Europe/Paris`."""
    return f"{when.astimezone(ZoneInfo(tz)):%Y-%m-%d %H:%M} {tz}"


class JobScheduleSpec(SpecModel):
    """When a job starts: `at` once, or at each time of `cron` in `tz`."""

    at: str | None = Field(
        None,
        description=(
            f"A one-off start time (ISO, e.g. {AT_EXAMPLE}; no offset is UTC): the job waits "
            "in status `scheduled` until then. Moving it while the job waits is an update."
        ),
    )
    cron: str | None = Field(
        None,
        description=(
            "A cron expression (5 fields, e.g. `0 2 * * *`): a schedule on the control plane "
            "creates a job at each due time. Changing it (or `tz`) is an update in place."
        ),
    )
    tz: str | None = Field(None, description="The cron's IANA timezone (default UTC).")

    @field_validator("at", mode="before")
    @classmethod
    def _an_iso_time(cls, value: Any) -> Any:
        if value is None:
            return None
        try:
            return canonical_time(value if isinstance(value, datetime) else str(value))
        except ValueError:
            raise ValueError(
                f"{value!r} is not a date and time; use an ISO time such as "
                f"{AT_EXAMPLE} (Z or an offset like +01:00; none is UTC)"
            ) from None

    @field_validator("cron")
    @classmethod
    def _a_cron(cls, value: str | None) -> str | None:
        return None if value is None else checked_cron(value)

    @field_validator("tz")
    @classmethod
    def _a_timezone(cls, value: str | None) -> str | None:
        return None if value is None else checked_timezone(value)

    @model_validator(mode="after")
    def _at_or_cron(self) -> JobScheduleSpec:
        if self.at is not None and self.cron is not None:
            raise ValueError(
                "schedule has both `at` and `cron`; keep `at` for one run, `cron` for a series"
            )
        if self.at is None and self.cron is None:
            raise ValueError('schedule needs `at` or `cron`; e.g. schedule: {cron: "0 2 * * *"}')
        if self.tz is not None and self.cron is None:
            raise ValueError("schedule.tz is for `cron`; `at` takes an offset (+01:00) instead")
        if self.cron is not None and self.tz is None:
            self.tz = "UTC"
        return self
