"""Scheduled jobs (issue 14): a job with `start_at` waits in status `scheduled` until the policy
clock reaches it, then runs once. The clock is moved by the test hook, never slept through."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.jobfixtures import JOBS, Counter, create_job, get_job, logs, wait_for
from tests.support import LocalServer, UserSession, new_user

HOUR = 3600.0


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A control plane of this module's own: its policy clock moves (the session's must not)."""
    server = LocalServer(tmp_path_factory.mktemp("schedules")).start()
    yield server
    server.stop()


def advance(server: LocalServer, seconds: float) -> float:
    """Move the server's policy clock; its new now."""
    answer = httpx.post(
        server.url + "/api/v1/_local/clock", json={"advance_seconds": seconds}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    now: float = answer.json()["now"]
    return now


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def in_an_hour(server: LocalServer) -> str:
    return iso(advance(server, 0) + HOUR)


def list_status(user: UserSession, status: str) -> list[str]:
    with user.http() as http:
        answer = http.get(JOBS, params={"status": status})
    assert answer.status_code == 200, answer.text
    return [job["id"] for job in answer.json()["jobs"]]


def create_refused(user: UserSession, **fields: Any) -> str:
    with user.http() as http:
        answer = http.post(JOBS, json={"command": "true", **fields})
    assert answer.status_code == 422, answer.text
    detail = answer.json()["details"]
    assert detail[0]["loc"][-1] == "start_at"
    return str(detail[0]["msg"])


def test_a_job_with_start_at_waits_scheduled_and_runs_when_due(plane: LocalServer) -> None:
    user = new_user(plane.url)
    when = in_an_hour(plane)
    job = create_job(user, command="echo ran", start_at=when)
    assert job["status"] == "scheduled"
    assert job["start_at"] == when.removesuffix("Z")
    assert job["started_at"] is None

    plane.reconcile()
    assert get_job(user, job["id"])["status"] == "scheduled"
    assert job["id"] in list_status(user, "scheduled")

    advance(plane, HOUR + 1)
    plane.reconcile()
    done = wait_for(user, job["id"], "completed")
    assert done["attempt"] == 1
    assert logs(user, job["id"]) == "ran\n"
    assert job["id"] not in list_status(user, "scheduled")


def test_cancelling_a_scheduled_job_means_it_never_runs(plane: LocalServer) -> None:
    user = new_user(plane.url)
    job = create_job(user, command="echo ran", start_at=in_an_hour(plane))
    with user.http() as http:
        answer = http.post(f"{JOBS}{job['id']}/cancel")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "cancelled"

    advance(plane, HOUR + 1)
    plane.reconcile()
    after = get_job(user, job["id"])
    assert after["status"] == "cancelled"
    assert after["started_at"] is None and after["attempt"] == 0


def test_another_user_does_not_see_a_scheduled_job(plane: LocalServer) -> None:
    owner, other = new_user(plane.url), new_user(plane.url)
    job = create_job(owner, command="true", start_at=in_an_hour(plane))
    with other.http() as http:
        assert http.get(f"{JOBS}{job['id']}").status_code == 404
        assert http.post(f"{JOBS}{job['id']}/cancel").status_code == 404
    assert list_status(other, "scheduled") == []


def test_a_time_without_offset_is_utc_and_a_past_or_bad_time_is_refused(
    plane: LocalServer,
) -> None:
    user = new_user(plane.url)
    naive = in_an_hour(plane).removesuffix("Z")
    assert create_job(user, command="true", start_at=naive)["start_at"] == naive
    paris = datetime.fromtimestamp(advance(plane, 0) + HOUR, UTC).astimezone()
    assert create_job(user, command="true", start_at=paris.isoformat())["status"] == "scheduled"

    message = create_refused(user, start_at="2001-01-01T00:00Z")
    assert "is in the past" in message and "leave start_at out" in message
    create_refused(user, start_at="tomorrow")


@pytest.mark.slow
def test_a_job_due_while_the_control_plane_was_down_runs_once_late(tmp_path: Path) -> None:
    server = LocalServer(tmp_path / "plane").start()
    counter = Counter()
    try:
        user = new_user(server.url)
        command = f"{counter.shell()}; echo run $n"
        job = create_job(user, command=command, start_at=in_an_hour(server))
        server.stop()

        # Started again two hours "later": the job became due while nothing was running.
        server = LocalServer(server.data_dir, env={"DUMONT_SERVER_CLOCK_OFFSET": str(2 * HOUR)})
        server.start()
        user = UserSession(user.email, user.token, user.client, server.url)
        done = wait_for(user, job["id"], "completed")
        server.reconcile()
        server.reconcile()

        assert counter.total() == 1
        assert done["attempt"] == 1
        assert logs(user, job["id"]) == "run 1\n"
        with user.http() as http:
            assert http.get(JOBS).json()["total"] == 1
    finally:
        counter.close()
        server.stop()
