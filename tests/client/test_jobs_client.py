"""JobsAPI against the real local control plane over loopback."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from dumont_plan.client import DumontClient, RetryPolicy
from dumont_plan.client.jobs import LogCursor, is_finished
from dumont_plan.errors import BadRequestError, NotFoundError, ServiceUnavailableError
from tests.support import OPEN_CLIENTS, LocalServer, UserSession


def wait_until(client: DumontClient, job_id: str, statuses: set[str], limit: float = 60) -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        job = client.jobs.get(job_id)
        if job.status in statuses:
            return job
        time.sleep(0.1)
    raise AssertionError(f"{job_id} never reached {statuses}: {job}")


def client_of(user: UserSession, **kwargs: Any) -> DumontClient:
    """Another client of `user` (closed at the end of the test, like the user's own)."""
    client = DumontClient(httpx.Client(base_url=user.url, timeout=30), user.token, **kwargs)
    OPEN_CLIENTS.append(client)
    return client


def test_create_get_list_logs_of_a_command_job(user: UserSession) -> None:
    job = user.client.jobs.create(name="hello", command="echo hello-from-job")
    assert job.id.startswith("job_")
    assert (job.name, job.source) == ("hello", "command")
    assert job.raw["id"] == job.id  # the server's object, kept as sent
    done = wait_until(user.client, job.id, {"completed", "failed"})
    assert done.status == "completed"
    assert user.client.jobs.get(job.id).id == job.id
    listed = user.client.jobs.list(limit=10)
    assert [j.id for j in listed.jobs] == [job.id]
    assert listed.total == 1
    assert [j["id"] for j in listed.raw["jobs"]] == [job.id]
    assert user.client.jobs.list(status="failed").raw == {"jobs": [], "total": 0}
    logs = user.client.jobs.logs(job.id)
    assert logs["job_id"] == job.id
    assert "hello-from-job" in logs["logs"]


def test_list_all_pages_with_offset(user: UserSession) -> None:
    created = [user.client.jobs.create(name=f"p{i}", command="true").id for i in range(3)]
    client = client_of(user)
    client.jobs.page_size = 2
    before = client.transport.request_count
    jobs = client.jobs.list_all()
    assert sorted(j.id for j in jobs) == sorted(created)
    assert client.transport.request_count - before == 2
    client.jobs.page_size = 3
    before = client.transport.request_count
    assert len(client.jobs.list_all()) == 3
    assert client.transport.request_count - before == 1  # `total` says nothing is left


def test_list_all_filters_by_status(user: UserSession) -> None:
    ok = user.client.jobs.create(name="ok", command="true").id
    bad = user.client.jobs.create(name="bad", command="exit 3").id
    wait_until(user.client, ok, {"completed"})
    wait_until(user.client, bad, {"failed"})
    client = client_of(user)
    client.jobs.page_size = 1
    assert [j.id for j in client.jobs.list_all(status="failed")] == [bad]


def test_cancel_stops_a_running_job_and_a_second_cancel_is_refused(
    server: LocalServer, user: UserSession
) -> None:
    job = user.client.jobs.create(name="long", command="sleep 60")
    wait_until(user.client, job.id, {"running"})
    cancelled = user.client.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    assert is_finished(cancelled)
    with pytest.raises(BadRequestError, match="already finished"):
        user.client.jobs.cancel(job.id)
    server.reconcile()  # a reconciler pass must not flip the status back
    assert user.client.jobs.get(job.id).status == "cancelled"


def test_an_unknown_job_is_not_found(user: UserSession) -> None:
    with pytest.raises(NotFoundError):
        user.client.jobs.get("job_00000000")


def test_the_same_idempotency_key_creates_one_job(user: UserSession) -> None:
    first = user.client.jobs.create(idempotency_key="k-1", name="once", command="true")
    again = user.client.jobs.create(idempotency_key="k-1", name="once", command="true")
    assert again.id == first.id
    assert user.client.jobs.list().total == 1


def test_create_is_never_retried_but_reads_are(server: LocalServer, user: UserSession) -> None:
    client = client_of(user, retry=RetryPolicy(attempts=3), sleep=lambda _s: None)
    httpx.post(server.url + "/api/v1/_local/faults", json={"count": 1, "status": 503})
    before = client.transport.request_count
    with pytest.raises(ServiceUnavailableError):
        client.jobs.create(name="x", command="true")
    assert client.transport.request_count - before == 1
    httpx.post(server.url + "/api/v1/_local/faults", json={"count": 1, "status": 503})
    assert client.jobs.list().raw == {"jobs": [], "total": 0}


def test_log_cursor_returns_each_line_once(user: UserSession) -> None:
    script = "for i in 1 2 3 4 5 6; do echo line-$i; sleep 0.2; done; printf tail-no-newline"
    job = user.client.jobs.create(name="lines", command=script)
    cursor = LogCursor(user.client.jobs, job.id)
    seen = cursor.start()
    while True:
        state = user.client.jobs.get(job.id)
        seen += cursor.read(final=is_finished(state))
        if is_finished(state):
            break
        time.sleep(0.15)
    ours = [line for line in seen if line.startswith(("line-", "tail-"))]
    assert ours == [*(f"line-{i}" for i in range(1, 7)), "tail-no-newline"]
    assert cursor.read(final=True) == []


def test_outputs_are_listed_and_downloadable_after_the_job(user: UserSession) -> None:
    job = user.client.jobs.create(
        name="out",
        command="mkdir -p output/sub && printf 'w=1\\n' > output/sub/model.txt",
        output_paths=["/workspace/output"],
    )
    assert wait_until(user.client, job.id, {"completed", "failed"}).status == "completed"
    listed = user.client.jobs.outputs(job.id)
    paths = [item["path"] for item in listed["outputs"]]
    assert any(p.endswith("sub/model.txt") for p in paths), listed
    path = next(p for p in paths if p.endswith("sub/model.txt"))
    assert user.client.jobs.download_output(job.id, path) == b"w=1\n"
    with pytest.raises(NotFoundError):
        user.client.jobs.download_output(job.id, "output/missing.txt")
