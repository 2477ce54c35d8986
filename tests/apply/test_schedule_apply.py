"""`schedule:` on a job, applied against a real local control plane: a cron schedule is
created, a changed cron is an update in place (same schedule id), the second plan is empty,
destroy deletes it; a waiting `at` job is moved in place; an apply killed after any ledger
write converges with one schedule (invariant 2)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.apply.applykit import Project
from tests.server.test_job_schedules import advance
from tests.support import LocalServer, UserSession, new_user

CRON = """
version: 1
project: sched
jobs:
  nightly:
    command: echo nightly
    timeout_minutes: 10
    schedule: {{cron: "{cron}", tz: {tz}}}
"""


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    server = LocalServer(tmp_path_factory.mktemp("sched-plane")).start()
    yield server
    server.stop()


def project(plane: LocalServer, tmp_path: Path) -> tuple[Project, UserSession]:
    user = new_user(plane.url)
    home = tmp_path / "home"
    home.mkdir()
    return Project(tmp_path / "work", home, user.url, user.token), user


def test_cron_schedule_is_created_updated_in_place_and_destroyed(
    plane: LocalServer, tmp_path: Path
) -> None:
    proj, user = project(plane, tmp_path)
    proj.write(CRON.format(cron="0 2 * * *", tz="Europe/Paris"))
    plan = proj("plan").stdout
    assert "+ create job.nightly" in plan and "next run" in plan and "Europe/Paris" in plan
    proj("apply", "-y")
    schedule_id = proj.remote_id("job.nightly")
    assert schedule_id.startswith("sch_")
    [schedule] = user.client.jobs.list_schedules()
    assert (schedule["id"], schedule["cron"], schedule["timezone"]) == (
        schedule_id,
        "0 2 * * *",
        "Europe/Paris",
    )
    assert schedule["name"] == "sched-nightly"
    assert user.client.jobs.list_all() == []  # no run yet: a schedule, not a job
    proj("plan", "--detailed-exitcode")  # converged: exit 0

    proj.write(CRON.format(cron="30 3 * * 1", tz="UTC"))
    changed = json.loads(proj("plan", "-o", "json", "--detailed-exitcode", code=2).stdout)
    [change] = changed["changes"]
    assert change["action"] == "update", change
    assert "next run" in change["reason"] and "03:30 UTC" in change["reason"]
    proj("apply", "-y")
    assert proj.remote_id("job.nightly") == schedule_id  # in place: the same schedule
    [schedule] = user.client.jobs.list_schedules()
    assert (schedule["id"], schedule["cron"], schedule["timezone"]) == (
        schedule_id,
        "30 3 * * 1",
        "UTC",
    )
    proj("plan", "--detailed-exitcode")

    # paused out of band: the plan says so and leaves it paused
    user.client.jobs.schedule_action(schedule_id, "pause")
    quiet = proj("plan", "--detailed-exitcode").stdout
    assert "paused" in quiet and f"dumont job schedules resume {schedule_id}" in quiet

    proj("destroy", "-y")
    assert user.client.jobs.list_schedules() == []
    assert proj.state()["resources"] == {}


def test_a_waiting_at_job_is_moved_in_place_and_destroy_cancels_it(
    plane: LocalServer, tmp_path: Path
) -> None:
    proj, user = project(plane, tmp_path)
    soon = datetime.now(UTC) + timedelta(days=2)
    later = soon + timedelta(days=1)
    spec = "version: 1\nproject: once\njobs:\n  report:\n    command: echo report\n"
    spec += '    schedule: {{at: "{at}"}}\n'
    proj.write(spec.format(at=soon.strftime("%Y-%m-%dT%H:%MZ")))
    proj("apply", "-y")
    job_id = proj.remote_id("job.report")
    job = user.client.jobs.get(job_id)
    assert job.status == "scheduled"
    assert job.raw["start_at"] == soon.strftime("%Y-%m-%dT%H:%M:00")
    proj("plan", "--detailed-exitcode")

    proj.write(spec.format(at=later.strftime("%Y-%m-%dT%H:%MZ")))
    moved = json.loads(proj("plan", "-o", "json", "--detailed-exitcode", code=2).stdout)["changes"][
        0
    ]
    assert moved["action"] == "update" and "start moved in place" in moved["reason"]
    proj("apply", "-y")
    assert proj.remote_id("job.report") == job_id  # the same job, not a new run
    assert user.client.jobs.get(job_id).raw["start_at"] == later.strftime("%Y-%m-%dT%H:%M:00")
    proj("plan", "--detailed-exitcode")

    proj("destroy", "-y")
    assert user.client.jobs.get(job_id).status == "cancelled"


@pytest.mark.slow
@pytest.mark.parametrize("writes", [1, 2, 3, 4])
def test_an_apply_killed_after_any_ledger_write_converges_to_one_schedule(
    plane: LocalServer, tmp_path: Path, writes: int
) -> None:
    """Writes 1-2: the fresh create; 3-4: the in-place change of the cron."""
    proj, user = project(plane, tmp_path)
    proj.write(CRON.format(cron="0 2 * * *", tz="UTC"))
    if writes > 2:
        proj("apply", "-y")
        proj.write(CRON.format(cron="0 4 * * *", tz="UTC"))
    crash = str(writes if writes <= 2 else writes - 2)
    died = proj.popen("apply", "-y", extra_env={"DUMONT_TEST_CRASH_AFTER": crash})
    died.communicate(timeout=120)
    assert died.returncode == 137
    proj("apply", "-y")
    proj("plan", "--detailed-exitcode")
    [schedule] = user.client.jobs.list_schedules()
    assert schedule["id"] == proj.remote_id("job.nightly")
    assert schedule["cron"] == ("0 2 * * *" if writes <= 2 else "0 4 * * *")


def test_a_schedule_created_just_before_a_crash_is_not_made_twice(
    plane: LocalServer, tmp_path: Path
) -> None:
    """The window no ledger write marks: the POST reached the server, the apply died before it
    recorded the answer. The journal kept the request's Idempotency-Key; the next apply sends
    it again and the server answers the schedule it made (one schedule, recorded)."""
    proj, user = project(plane, tmp_path)
    proj.write(CRON.format(cron="0 2 * * *", tz="UTC"))
    died = proj.popen("apply", "-y", extra_env={"DUMONT_TEST_CRASH_AFTER": "1"})
    died.communicate(timeout=120)
    assert died.returncode == 137
    [pending] = proj.state()["pending"]
    assert pending["action"] == "create" and pending["idempotency_key"]
    body = {"name": "sched-nightly", "command": "echo nightly", "timeout_minutes": 10}
    made = user.client.jobs.create_schedule(  # what the killed apply had sent
        "0 2 * * *", "UTC", body, name="sched-nightly", idempotency_key=pending["idempotency_key"]
    )
    proj("apply", "-y")
    proj("plan", "--detailed-exitcode")
    [schedule] = user.client.jobs.list_schedules()
    assert schedule["id"] == made["id"] == proj.remote_id("job.nightly")
    assert proj.state()["pending"] == []


def test_a_schedules_runs_are_no_resource_and_the_plan_stays_empty(
    plane: LocalServer, tmp_path: Path
) -> None:
    """The control plane's clock moves past two due times: two runs, linked to the schedule;
    the plan stays empty (a run is not adopted, nor an orphan) and says the next run."""
    proj, user = project(plane, tmp_path)
    proj.write(CRON.format(cron="0 2 * * *", tz="UTC"))
    proj("apply", "-y")
    schedule_id = proj.remote_id("job.nightly")
    for _ in range(2):
        advance(plane, 24 * 3600)
        plane.reconcile()
    runs = [j for j in user.client.jobs.list_all() if j.raw.get("schedule_id") == schedule_id]
    assert len(runs) == 2 and {j.name for j in runs} == {"sched-nightly"}
    quiet = json.loads(proj("plan", "-o", "json", "--detailed-exitcode").stdout)
    [change] = quiet["changes"]
    assert change["action"] == "noop" and change["reason"].startswith("next run ")
    assert user.client.jobs.get_schedule(schedule_id)["runs"] == 2
