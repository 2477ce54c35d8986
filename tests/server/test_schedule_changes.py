"""Changing a schedule in place (what `dumont apply` does when a job's `schedule:` changes):
`PATCH /api/v1/jobs/schedules/{id}` (cron/timezone, same id) and `PATCH /api/v1/jobs/{id}`
(a waiting job's start_at); an Idempotency-Key on `POST /jobs/schedules` replays the first
schedule. The policy clock moves, nothing sleeps."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from tests.server.jobfixtures import JOBS, create_job, get_job
from tests.server.test_job_cron_schedules import SCHEDULES, create, get
from tests.server.test_job_schedules import HOUR, advance, iso
from tests.support import LocalServer, new_user


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    server = LocalServer(tmp_path_factory.mktemp("changes")).start()
    yield server
    server.stop()


def test_patch_changes_cron_and_timezone_in_place(plane: LocalServer) -> None:
    user = new_user(plane.url)
    schedule = create(user, cron="0 2 * * *", timezone="UTC")
    with user.http() as http:
        answer = http.patch(
            f"{SCHEDULES}/{schedule['id']}", json={"cron": "30 3 * * *", "timezone": "Asia/Tokyo"}
        )
    assert answer.status_code == 200, answer.text
    changed = answer.json()
    assert (changed["id"], changed["cron"], changed["timezone"]) == (
        schedule["id"],
        "30 3 * * *",
        "Asia/Tokyo",
    )
    due = datetime.fromisoformat(changed["next_run_at"]).replace(tzinfo=UTC)
    local = due.astimezone(ZoneInfo("Asia/Tokyo"))
    assert (local.hour, local.minute) == (3, 30)
    assert changed["job"] == schedule["job"] and get(user, schedule["id"]) == changed
    # only the timezone: the cron stays
    with user.http() as http:
        again = http.patch(f"{SCHEDULES}/{schedule['id']}", json={"timezone": "UTC"}).json()
    assert (again["cron"], again["timezone"]) == ("30 3 * * *", "UTC")


def test_patch_keeps_a_paused_schedule_paused(plane: LocalServer) -> None:
    user = new_user(plane.url)
    schedule = create(user)
    with user.http() as http:
        assert http.post(f"{SCHEDULES}/{schedule['id']}/pause").status_code == 200
        changed = http.patch(f"{SCHEDULES}/{schedule['id']}", json={"cron": "0 4 * * *"}).json()
    assert changed["paused"] is True and changed["next_run_at"] is None
    assert changed["cron"] == "0 4 * * *"


def test_patch_refuses_bad_input_and_another_users_schedule(plane: LocalServer) -> None:
    owner, other = new_user(plane.url), new_user(plane.url)
    schedule = create(owner)
    url = f"{SCHEDULES}/{schedule['id']}"
    with owner.http() as http:
        bad = http.patch(url, json={"cron": "every day"})
        assert bad.status_code == 422, bad.text
        assert bad.json()["details"][0]["loc"] == ["body", "cron"]
        zone = http.patch(url, json={"timezone": "Mars/Olympus"})
        assert zone.status_code == 422 and "IANA" in zone.text
        assert http.patch(url).status_code == 422  # no body
    with other.http() as http:
        assert http.patch(url, json={"cron": "0 5 * * *"}).status_code == 404
        assert http.patch(url).status_code == 404  # the id first, whatever the body
    assert get(owner, schedule["id"])["cron"] == schedule["cron"]


def test_an_idempotency_key_replays_the_first_schedule(plane: LocalServer) -> None:
    user = new_user(plane.url)
    body = {"cron": "0 2 * * *", "job": {"name": "nightly", "command": "true"}}
    with user.http() as http:
        first = http.post(SCHEDULES, json=body, headers={"Idempotency-Key": "k-1"})
        second = http.post(SCHEDULES, json=body, headers={"Idempotency-Key": "k-1"})
        listed = http.get(SCHEDULES).json()
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert listed["total"] == 1


def test_patch_moves_a_waiting_jobs_start_and_null_starts_it_now(plane: LocalServer) -> None:
    user = new_user(plane.url)
    now = advance(plane, 0)
    job = create_job(user, command="echo moved", start_at=iso(now + HOUR))
    later = iso(now + 5 * HOUR)
    with user.http() as http:
        moved = http.patch(f"{JOBS}{job['id']}", json={"start_at": later})
    assert moved.status_code == 200, moved.text
    assert moved.json()["start_at"] == later.removesuffix("Z")
    assert moved.json()["status"] == "scheduled"
    advance(plane, 2 * HOUR)  # the old time passed: it still waits
    plane.reconcile()
    assert get_job(user, job["id"])["status"] == "scheduled"
    with user.http() as http:
        started = http.patch(f"{JOBS}{job['id']}", json={"start_at": None})
    assert started.status_code == 200, started.text
    assert started.json()["status"] != "scheduled"


def test_patch_refuses_a_past_time_a_started_job_and_another_users(plane: LocalServer) -> None:
    owner, other = new_user(plane.url), new_user(plane.url)
    now = advance(plane, 0)
    job = create_job(owner, command="true", start_at=iso(now + HOUR))
    url = f"{JOBS}{job['id']}"
    with owner.http() as http:
        past = http.patch(url, json={"start_at": iso(now - HOUR)})
        assert past.status_code == 422 and past.json()["details"][0]["loc"] == ["body", "start_at"]
        assert http.patch(url).status_code == 422  # no body
    with other.http() as http:
        assert http.patch(url, json={"start_at": iso(now + 2 * HOUR)}).status_code == 404
    running = create_job(owner, command="true")
    with owner.http() as http:
        late = http.patch(f"{JOBS}{running['id']}", json={"start_at": iso(now + HOUR)})
    assert late.status_code == 400 and "no longer scheduled" in late.text
    assert get_job(owner, job["id"])["start_at"] == iso(now + HOUR).removesuffix("Z")
