"""Cron schedules of jobs (issue 14): `POST /api/v1/jobs/schedules` creates a job from its
template at each due time, linked by `schedule_id`; pause/resume/delete; per user; a restart
neither loses nor doubles a run (run once late). The policy clock moves, nothing sleeps."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.server.jobfixtures import JOBS, wait_for
from tests.server.test_job_schedules import HOUR, advance
from tests.support import LocalServer, UserSession, new_user

SCHEDULES = "/api/v1/jobs/schedules"
HOURLY = "0 * * * *"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    server = LocalServer(tmp_path_factory.mktemp("cron")).start()
    yield server
    server.stop()


def create(user: UserSession, **fields: Any) -> dict[str, Any]:
    body = {"cron": HOURLY, "job": {"name": "nightly", "command": "echo tick"}, **fields}
    with user.http() as http:
        answer = http.post(SCHEDULES, json=body)
    assert answer.status_code == 201, answer.text
    schedule: dict[str, Any] = answer.json()
    return schedule


def refused(user: UserSession, body: dict[str, Any]) -> dict[str, Any]:
    with user.http() as http:
        answer = http.post(SCHEDULES, json=body)
    assert answer.status_code == 422, answer.text
    detail: dict[str, Any] = answer.json()["details"][0]
    return detail


def runs(user: UserSession, schedule_id: str) -> list[dict[str, Any]]:
    with user.http() as http:
        jobs = http.get(JOBS, params={"limit": 100}).json()["jobs"]
    return [job for job in jobs if job["schedule_id"] == schedule_id]


def get(user: UserSession, schedule_id: str) -> dict[str, Any]:
    with user.http() as http:
        answer = http.get(f"{SCHEDULES}/{schedule_id}")
    assert answer.status_code == 200, answer.text
    schedule: dict[str, Any] = answer.json()
    return schedule


def post(user: UserSession, path: str) -> dict[str, Any]:
    with user.http() as http:
        answer = http.post(f"{SCHEDULES}/{path}")
    assert answer.status_code == 200, answer.text
    schedule: dict[str, Any] = answer.json()
    return schedule


def to_next_hour(server: LocalServer) -> None:
    """Move the policy clock just past the next o'clock, then drive a pass."""
    now = advance(server, 0)
    advance(server, HOUR - now % HOUR + 1)
    server.reconcile()


def test_each_due_time_creates_one_job_linked_to_its_schedule(plane: LocalServer) -> None:
    user = new_user(plane.url)
    schedule = create(user)
    assert schedule["paused"] is False and schedule["runs"] == 0
    assert schedule["next_run_at"].endswith(":00:00")
    assert schedule["job"]["command"] == "echo tick"
    plane.reconcile()
    assert runs(user, schedule["id"]) == []

    to_next_hour(plane)
    plane.reconcile()  # a second pass at the same time: still one run
    first = runs(user, schedule["id"])
    assert len(first) == 1 and first[0]["name"] == "nightly"
    assert wait_for(user, first[0]["id"], "completed")["status"] == "completed"
    after = get(user, schedule["id"])
    assert after["runs"] == 1 and after["last_job_id"] == first[0]["id"]

    to_next_hour(plane)
    assert len(runs(user, schedule["id"])) == 2


def test_pause_resume_and_delete(plane: LocalServer) -> None:
    user = new_user(plane.url)
    schedule = create(user)
    paused = post(user, f"{schedule['id']}/pause")
    assert paused["paused"] is True and paused["next_run_at"] is None
    to_next_hour(plane)
    assert runs(user, schedule["id"]) == []

    resumed = post(user, f"{schedule['id']}/resume")
    assert resumed["paused"] is False and resumed["next_run_at"] is not None
    to_next_hour(plane)
    assert len(runs(user, schedule["id"])) == 1

    with user.http() as http:
        assert http.delete(f"{SCHEDULES}/{schedule['id']}").status_code == 200
        assert http.get(f"{SCHEDULES}/{schedule['id']}").status_code == 404
    to_next_hour(plane)
    assert len(runs(user, schedule["id"])) == 1  # the job it made stays; no new one


def test_the_timezone_places_the_due_time(plane: LocalServer) -> None:
    user = new_user(plane.url)
    schedule = create(user, cron="0 2 * * *", timezone="Europe/Paris")
    due = datetime.fromisoformat(schedule["next_run_at"]).replace(tzinfo=UTC)
    assert due.astimezone(ZoneInfo("Europe/Paris")).hour == 2


def test_another_user_sees_none_of_them(plane: LocalServer) -> None:
    owner, other = new_user(plane.url), new_user(plane.url)
    schedule = create(owner)
    with other.http() as http:
        assert http.get(SCHEDULES).json() == {"schedules": [], "total": 0}
        for method, path in [
            ("GET", ""),
            ("POST", "/pause"),
            ("POST", "/resume"),
            ("DELETE", ""),
        ]:
            url = f"{SCHEDULES}/{schedule['id']}{path}"
            assert http.request(method, url).status_code == 404, (method, path)
    assert get(owner, schedule["id"])["paused"] is False


def test_bad_cron_timezone_or_secret_template_is_a_422(plane: LocalServer) -> None:
    user = new_user(plane.url)
    job = {"command": "true"}
    bad_cron = refused(user, {"cron": "every day", "job": job})
    assert bad_cron["loc"] == ["body", "cron"] and "0 2 * * *" in bad_cron["msg"]
    bad_tz = refused(user, {"cron": HOURLY, "timezone": "Mars/Olympus", "job": job})
    assert bad_tz["loc"] == ["body", "timezone"] and "Europe/Paris" in bad_tz["msg"]
    secret = refused(user, {"cron": HOURLY, "job": {**job, "secrets": {"K": "s3cr3t-value"}}})
    assert secret["loc"] == ["body", "job", "secrets"] and "never stored" in secret["msg"]
    assert "s3cr3t-value" not in str(secret)
    workdir = refused(user, {"cron": HOURLY, "job": {**job, "workdir_id": "wd_x"}})
    assert workdir["loc"] == ["body", "job", "workdir_id"] and "git_url" in workdir["msg"]
    with user.http() as http:
        assert http.get(SCHEDULES).json()["total"] == 0


@pytest.mark.slow
def test_runs_missed_while_down_become_one_late_run(tmp_path: Path) -> None:
    server = LocalServer(tmp_path / "plane").start()
    try:
        user = new_user(server.url)
        schedule = create(user)
        server.stop()

        # Five due times pass while nothing runs: one run, late, then the next o'clock.
        server = LocalServer(server.data_dir, env={"DUMONT_SERVER_CLOCK_OFFSET": str(5 * HOUR)})
        server.start()
        user = UserSession(user.email, user.token, user.client, server.url)
        server.reconcile()
        server.reconcile()
        made = runs(user, schedule["id"])
        assert len(made) == 1
        wait_for(user, made[0]["id"], "completed")
        after = get(user, schedule["id"])
        assert after["runs"] == 1
        now = httpx.post(
            server.url + "/api/v1/_local/clock", json={"advance_seconds": 0}, timeout=10
        ).json()["now"]
        due = datetime.fromisoformat(after["next_run_at"]).replace(tzinfo=UTC).timestamp()
        assert now < due <= now + HOUR
    finally:
        server.stop()
