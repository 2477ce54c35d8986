"""Limits of the control plane against one greedy or careless user (issue 10, item 3).

- per-user running jobs: the ones past the limit wait in `pending` and start in order as
  others finish (a queue, not a refusal); another user's jobs do not wait behind them;
- per-user instances: past the limit a 429 with a clear message;
- a request body over 1 MiB is a 413 in the envelope (told or chunked);
- integers out of range, NaN, infinities and lone surrogates are a 422, never a 500 and
  never stored (a blacklist entry of 1e9 hours broke every later read of the list);
- a 500 leaves the kept-alive connection usable.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.instancefixtures import FAST_ENV, INSTANCES, reliable_offer
from tests.server.jobfixtures import GATE, JOBS, create_job, get_job, open_gate, wait_for
from tests.support import LocalServer, UserSession, new_user

FINISHED = {"completed", "failed", "cancelled", "timeout"}
BLACKLIST = "/api/v1/machines/history/blacklist"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    server = LocalServer(
        tmp_path_factory.mktemp("limited"),
        extra_args=["--max-running-jobs", "2", "--max-instances", "1"],
        env=FAST_ENV,
    ).start()
    yield server
    server.stop()


def statuses(user: UserSession, ids: list[str]) -> list[str]:
    return [get_job(user, job_id)["status"] for job_id in ids]


def test_jobs_past_the_limit_wait_in_order(limited: LocalServer) -> None:
    greedy = new_user(limited.url)
    ids = [
        create_job(greedy, name=f"queued-{i}", command=GATE, timeout_minutes=10)["id"]
        for i in range(5)
    ]
    other = new_user(limited.url)
    theirs = create_job(other, name="not-behind", command="true", timeout_minutes=10)
    assert wait_for(other, theirs["id"], "completed")["status"] == "completed"
    wait_for(greedy, ids[0], "running")
    wait_for(greedy, ids[1], "running")
    limited.reconcile()
    assert statuses(greedy, ids)[2:] == ["pending"] * 3
    started: list[str] = []
    for job_id in ids:
        wait_for(greedy, job_id, "running")
        now = statuses(greedy, ids)
        active = [s for s in now if s not in FINISHED and s != "pending"]
        assert len(active) <= 2, now
        started.append(job_id)
        open_gate(limited, job_id)
        assert wait_for(greedy, job_id, "completed")["status"] == "completed"
    jobs = [get_job(greedy, job_id) for job_id in ids]
    starts = [job["started_at"] for job in jobs]
    assert starts == sorted(starts), "queued jobs started out of order"


def runner_processes(server: LocalServer) -> int:
    """Live job runners of this server (their command line names the module and the data dir).

    A runner's child between its fork and its exec still shows the runner's command line: a
    process whose parent is a runner is not counted.
    """
    root = str(server.data_dir.resolve()).encode()
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                argv = (entry / "cmdline").read_bytes()
                fields = (entry / "stat").read_bytes().rpartition(b")")[2].split()
                is_runner = b"dumont_plan.server.provider.runner" in argv and root in argv
                if is_runner and fields[0] not in (b"Z", b"X"):
                    parents[int(entry.name)] = int(fields[1])
    return sum(1 for parent in parents.values() if parent not in parents)


@pytest.mark.slow
def test_many_jobs_run_with_a_bounded_number_of_runners(limited: LocalServer) -> None:
    user = new_user(limited.url)
    created: list[str] = []
    lock = threading.Lock()

    def submit(start: int) -> None:
        with user.http() as http:
            for i in range(start, 60, 6):
                answer = http.post(JOBS, json={"name": f"many-{i:02d}", "command": "true"})
                assert answer.status_code == 201, answer.text
                with lock:
                    created.append(answer.json()["id"])

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    most = 0
    while any(thread.is_alive() for thread in threads):
        most = max(most, runner_processes(limited))
    for thread in threads:
        thread.join()
    assert len(created) == 60
    deadline = time.monotonic() + 240
    while True:
        most = max(most, runner_processes(limited))
        with user.http() as http:
            done = http.get(JOBS, params={"status": "completed", "limit": 1}).json()["total"]
        if done == 60:
            break
        assert time.monotonic() < deadline, f"{done} of 60 jobs completed"
        time.sleep(0.05)
    assert 1 <= most <= 2, f"{most} runners at once (limit 2)"


def test_a_cancelled_queued_job_never_starts(limited: LocalServer) -> None:
    user = new_user(limited.url)
    ids = [
        create_job(user, name=f"c-{i}", command=GATE, timeout_minutes=10)["id"] for i in range(3)
    ]
    wait_for(user, ids[1], "running")
    with user.http() as http:
        assert http.post(f"{JOBS}{ids[2]}/cancel").status_code == 200
    for job_id in ids[:2]:
        open_gate(limited, job_id)
        wait_for(user, job_id, "completed")
    limited.reconcile()
    job = get_job(user, ids[2])
    assert (job["status"], job["started_at"]) == ("cancelled", None)


def test_instances_past_the_limit_are_a_429(limited: LocalServer) -> None:
    user = new_user(limited.url)
    with user.http() as http:
        first = http.post(INSTANCES, json={"offer_id": reliable_offer(http)["id"]})
        assert first.status_code == 201, first.text
        refused = http.post(INSTANCES, json={"offer_id": reliable_offer(http)["id"]})
        assert refused.status_code == 429
        message = refused.json()["error"]
        assert message == (
            "instance limit reached: this server allows 1 instance(s) per user and you have 1; "
            "delete one you no longer need (dumont instance delete ID)"
        )
        assert len(http.get(INSTANCES).json()["instances"]) == 1
        assert http.delete(f"{INSTANCES}/{first.json()['id']}").status_code == 200
        again = http.post(INSTANCES, json={"offer_id": reliable_offer(http)["id"]})
        assert again.status_code == 201, again.text
        http.delete(f"{INSTANCES}/{again.json()['id']}")


def test_a_body_over_one_mebibyte_is_a_413(server: LocalServer, user: UserSession) -> None:
    big = json.dumps({"name": "big", "command": "true", "setup_script": "#" * (1 << 20)})
    with user.http() as http:
        told = http.post(JOBS, content=big, headers={"Content-Type": "application/json"})
        chunked = http.post(
            JOBS,
            content=(big[i : i + 65536].encode() for i in range(0, len(big), 65536)),
            headers={"Content-Type": "application/json"},
        )
        for answer in (told, chunked):
            assert answer.status_code == 413, answer.text[:200]
            assert answer.json() == {"error": "Request body too large: the limit is 1048576 bytes"}
        assert http.get(JOBS).json()["total"] == 0
        long_script = http.post(JOBS, json={"command": "true", "setup_script": "#" * 70000})
        assert long_script.status_code == 422


def _post_raw(user: UserSession, path: str, body: bytes) -> httpx.Response:
    with user.http() as http:
        return http.post(path, content=body, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (JOBS, b'{"command": "true", "disk_size": NaN}'),
        (JOBS, b'{"command": "true", "disk_size": 1e999}'),
        (JOBS, b'{"command": "true", "name": "x\\ud800"}'),
        (BLACKLIST, b'{"provider": "p", "machine_id": "\\udfff", "reason": "r"}'),
        ("/api/v1/auth/login", b'{"email": "a@example.com", "password": -Infinity}'),
    ],
)
def test_nan_infinity_and_lone_surrogates_are_a_422(
    user: UserSession, path: str, body: bytes
) -> None:
    answer = _post_raw(user, path, body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "Validation error"
    with user.http() as http:
        assert http.get(JOBS).json()["total"] == 0
        listed = http.get(BLACKLIST, params={"include_expired": True})
        assert (listed.status_code, listed.json()) == (200, []), listed.text


@pytest.mark.parametrize(
    ("method", "path", "params", "body"),
    [
        ("GET", JOBS, {"offset": 2**63}, None),
        ("GET", JOBS, {"offset": -1}, None),
        ("GET", f"{JOBS}job_x/logs", {"tail": 2**64}, None),
        ("GET", "/api/v1/machines/history/problematic", {"min_attempts": 2**63}, None),
        ("GET", f"{INSTANCES}/offers", {"max_price": "nan"}, None),
        ("GET", f"{INSTANCES}/offers", {"min_cpu_cores": 2**63}, None),
        ("POST", JOBS, None, {"command": "true", "offer_id": 2**63}),
        ("POST", INSTANCES, None, {"offer_id": 2**64}),
        ("POST", BLACKLIST, None, {"provider": "p", "machine_id": "m", "reason": "r",
                                   "duration_hours": 1e9}),
    ],
)  # fmt: skip
def test_integers_out_of_range_are_a_422(
    user: UserSession,
    method: str,
    path: str,
    params: dict[str, Any] | None,
    body: dict[str, Any] | None,
) -> None:
    with user.http() as http:
        answer = http.request(method, path, params=params, json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"] == "Validation error"
        listed = http.get(BLACKLIST, params={"include_expired": True})
        assert (listed.status_code, listed.json()) == (200, []), listed.text


def test_a_500_keeps_the_connection_open(server: LocalServer) -> None:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/_local/raise HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
        )
        first = read_response(sock)
        assert first.startswith(b"HTTP/1.1 500"), first
        assert json.loads(first.partition(b"\r\n\r\n")[2]) == {
            "error": "Internal server error",
            "details": "DeliberateBug",
        }
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        second = read_response(sock)
        assert second.startswith(b"HTTP/1.1 200"), second


def read_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response with a Content-Length (b"" if the server closed the connection)."""
    data = b""
    deadline = time.monotonic() + 10
    while b"\r\n\r\n" not in data and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body
