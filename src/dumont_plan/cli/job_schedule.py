"""`dumont job create --at|--cron` and `dumont job schedules [pause|resume|delete ID]`.

`--at` is a one-off start time (the job waits in status `scheduled`); `--cron` (with `--tz`)
makes a schedule on the control plane that creates the job at each due time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer

from dumont_plan.cli.job_watch import about
from dumont_plan.cli.output import OutputFormat, OutputOpt, console, emit_json, print_table
from dumont_plan.cli.session import open_client
from dumont_plan.client import DumontClient
from dumont_plan.errors import DumontError

AT_EXAMPLE = '--at="2026-12-05T02:00Z"'


def start_at(value: str, where: str) -> str:
    """`--at` as the API's ISO time (UTC when it has no offset); one clear line when bad."""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise DumontError(
            f"{where}: --at={value} is not a date and time",
            f"use an ISO time such as {AT_EXAMPLE} (Z or an offset like +01:00; none is UTC)",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when < datetime.now(UTC):
        raise DumontError(
            f"{where}: --at={value} is in the past",
            "give a later time, or leave --at out to start now",
        )
    return when.isoformat()


def timezone(value: str, where: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise DumontError(
            f"{where}: --tz={value} is not a timezone",
            "use an IANA name such as UTC, Europe/Paris or America/New_York",
        ) from None
    return value


def check_options(
    at: str | None, cron: str | None, tz: str | None, where: str, waits: str | None = None
) -> None:
    """`--at`/`--cron`/`--tz` together make sense; `waits`: the --wait or --follow given."""
    if at is not None and cron is not None:
        raise DumontError(f"{where}: both --at and --cron are given", "use one")
    if cron is not None and waits:
        raise DumontError(
            f"{where}: {waits} waits for one job, and --cron makes a schedule (each run is a job)",
            f"leave out {waits}; follow a run with `dumont job logs JOB_ID --follow` "
            "(its id: `dumont job schedules`, LAST JOB ID)",
        )
    if tz is not None and cron is None:
        raise DumontError(f"{where}: --tz is for --cron", 'add --cron="0 2 * * *" or drop --tz')


def show_schedule(schedule: dict[str, Any], output: OutputFormat) -> None:
    if output is OutputFormat.json:
        emit_json(schedule)
        return
    state = "paused" if schedule.get("paused") else f"next run {schedule.get('next_run_at')} UTC"
    console.print(
        f"Schedule {schedule['id']} ({schedule.get('name')}): {schedule.get('cron')!s}"
        f" in {schedule.get('timezone')}, {state}",
        markup=False,
    )


schedules_app = typer.Typer(
    help=(
        "Your cron schedules of jobs: list them (no subcommand), pause, resume or delete one.\n\n"
        'Make one with `dumont job create NAME --command=... --cron="0 2 * * *" '
        "--tz=Europe/Paris`; each run is a job whose schedule_id names the schedule."
    ),
    invoke_without_command=True,
)
COLUMNS = ("id", "name", "cron", "timezone", "state", "next_run_at", "runs", "last_job_id")
IdArg = typer.Argument(..., metavar="SCHEDULE_ID", help="The schedule's id (sch_…).")


@schedules_app.callback(epilog="Example:\n\n  dumont job schedules --output json")
def list_schedules(ctx: typer.Context, output: OutputOpt = OutputFormat.table) -> None:
    """List your schedules (next run times are UTC)."""
    if ctx.invoked_subcommand is not None:
        return
    found = open_client(ctx).jobs.list_schedules()
    if output is OutputFormat.json:
        emit_json({"schedules": found, "total": len(found)})
        return
    rows = [{**s, "state": "paused" if s.get("paused") else "active"} for s in found]
    print_table(rows, COLUMNS)


def _act(ctx: typer.Context, schedule_id: str, action: str, output: OutputFormat) -> None:
    client: DumontClient = open_client(ctx)
    where = f"job schedules {action}"
    with about("schedule", "job", schedule_id, where, listing="dumont job schedules"):
        answer = client.jobs.schedule_action(schedule_id, action)
    if action == "delete":
        if output is OutputFormat.json:
            emit_json(answer)
        else:
            console.print(f"Schedule {schedule_id} deleted (its jobs stay).", markup=False)
        return
    show_schedule(answer, output)


@schedules_app.command(epilog="Example:\n\n  dumont job schedules pause sch_1a2b3c4d")
def pause(
    ctx: typer.Context, schedule_id: str = IdArg, output: OutputOpt = OutputFormat.table
) -> None:
    """No run until resumed (a job it already started goes on)."""
    _act(ctx, schedule_id, "pause", output)


@schedules_app.command(epilog="Example:\n\n  dumont job schedules resume sch_1a2b3c4d")
def resume(
    ctx: typer.Context, schedule_id: str = IdArg, output: OutputOpt = OutputFormat.table
) -> None:
    """Run again from the next due time (the runs missed while paused are skipped)."""
    _act(ctx, schedule_id, "resume", output)


@schedules_app.command(epilog="Example:\n\n  dumont job schedules delete sch_1a2b3c4d")
def delete(
    ctx: typer.Context, schedule_id: str = IdArg, output: OutputOpt = OutputFormat.table
) -> None:
    """Delete the schedule; the jobs it created stay."""
    _act(ctx, schedule_id, "delete", output)
