"""`dumont job create --at|--cron`, `dumont job schedules …`, `dumont job list --status=scheduled`:
the CLI in a subprocess against the real local control plane (nothing here waits for a time)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_job_cli import Cli, created, ok, one_error_line
from tests.support import UserSession, cli_env, run_cli


@pytest.fixture
def run(cli: Any) -> Cli:
    return cli  # type: ignore[no-any-return]


def tomorrow() -> str:
    return (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%MZ")


def test_at_creates_a_scheduled_job_that_list_and_cancel_see(run: Cli) -> None:
    when = tomorrow()
    job = created(run("job", "create", "later", "--command=echo hi", f"--at={when}", "-o", "json"))
    assert job["status"] == "scheduled"
    assert job["start_at"].startswith(when[:16])

    listed = json.loads(ok(run("job", "list", "--status=scheduled", "-o", "json")).stdout)
    assert [j["id"] for j in listed["jobs"]] == [job["id"]]
    table = ok(run("job", "list", "--status=scheduled")).stdout
    assert job["id"] in table and "scheduled" in table

    shown = ok(run("job", "status", job["id"])).stdout.splitlines()
    assert ["start_at", job["start_at"]] in [line.split() for line in shown]
    ok(run("job", "cancel", job["id"]))
    listed = json.loads(ok(run("job", "list", "--status=scheduled", "-o", "json")).stdout)
    assert listed["jobs"] == []

    said = ok(run("job", "create", "later", "--command=true", f"--at={when}")).stdout
    assert ": scheduled; RTX 4090 spot at $" in said and f"starts at {job['start_at']} UTC" in said


def test_cron_makes_a_schedule_that_schedules_lists_pauses_resumes_and_deletes(run: Cli) -> None:
    made = ok(
        run(
            "job", "create", "nightly", "--command=python train.py",
            "--cron=0 2 * * *", "--tz=Europe/Paris", "-o", "json",
        )
    )  # fmt: skip
    schedule = json.loads(made.stdout)
    assert (schedule["cron"], schedule["timezone"]) == ("0 2 * * *", "Europe/Paris")
    assert schedule["job"]["command"] == "python train.py" and schedule["name"] == "nightly"
    # No job yet: the schedule makes one at 02:00 Paris time.
    assert json.loads(ok(run("job", "list", "-o", "json")).stdout)["jobs"] == []

    table = ok(run("job", "schedules")).stdout
    assert schedule["id"] in table and "Europe/Paris" in table and "active" in table
    assert "paused" in ok(run("job", "schedules", "pause", schedule["id"])).stdout
    listed = json.loads(ok(run("job", "schedules", "-o", "json")).stdout)
    assert [s["paused"] for s in listed["schedules"]] == [True]
    assert "next run" in ok(run("job", "schedules", "resume", schedule["id"])).stdout
    assert "deleted" in ok(run("job", "schedules", "delete", schedule["id"])).stdout
    assert json.loads(ok(run("job", "schedules", "-o", "json")).stdout)["total"] == 0

    for action in ("pause", "resume", "delete"):  # gone: one line naming it and the fix
        line = one_error_line(run("job", "schedules", action, schedule["id"]))
        assert line == (
            f"Error: job schedules {action}: no schedule {schedule['id']} (or it is not yours); "
            "see your schedules with `dumont job schedules`"
        )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--at=tomorrow"], '--at="2026-12-05T02:00Z"'),
        (["--at=2001-01-01T00:00Z"], "in the past"),
        (["--cron=every night"], "0 2 * * *"),
        (["--cron=0 2 * * *", "--tz=Mars/Olympus"], "Europe/Paris"),
        (["--tz=Europe/Paris"], "--tz is for --cron"),
        ([f"--at={tomorrow()}", "--cron=0 2 * * *"], "both --at and --cron"),
        (["--cron=0 2 * * *", "--follow"], "--follow waits for one job, and --cron makes a"),
        (["--cron=0 2 * * *", "--wait"], "leave out --wait; follow a run with `dumont job logs"),
    ],
)
def test_a_bad_time_cron_or_timezone_is_one_line_naming_the_fix(
    run: Cli, args: list[str], says: str
) -> None:
    line = one_error_line(run("job", "create", "x", "--command=true", *args))
    assert says in line
    assert json.loads(ok(run("job", "schedules", "-o", "json")).stdout)["total"] == 0


def test_on_an_80_column_terminal_the_schedule_id_is_whole(home: Path, user: UserSession) -> None:
    """The id is what `pause|resume|delete` need: the other columns give way, it is not cut."""
    made = user.client.jobs.create_schedule(
        "0 2 * * *", "Europe/Paris", {"name": "a-rather-long-schedule-name", "command": "true"}
    )
    env = {**cli_env(home, user.url, user.token), "COLUMNS": "80"}
    table = ok(run_cli(["job", "schedules"], env)).stdout
    assert made["id"] in table, table
    assert max(len(line) for line in table.splitlines()) <= 80


def test_following_a_job_that_waits_for_its_time_says_so(home: Path, user: UserSession) -> None:
    when = tomorrow()
    job = user.client.jobs.create(name="later", command="echo hi", start_at=when)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dumont_plan", "job", "logs", job.id, "--follow", "--poll=0.2"],
        env=cli_env(home, user.url, user.token),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        first = proc.stderr.readline()  # said at once, not after the wait
        # A moment later it sleeps between polls (a signal in the middle of rich writing the
        # line out would print it a second time).
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, rest = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        user.client.jobs.cancel(job.id)
    assert first.startswith(f"{job.id} (later): scheduled; starts at {when[:10]}"), first
    assert first.endswith(": its log starts then (Ctrl-C stops following, not the job)\n")
    assert proc.returncode == 130 and out == ""
    assert rest.startswith(f"Error: stopped following: job {job.id} is scheduled and goes on")
