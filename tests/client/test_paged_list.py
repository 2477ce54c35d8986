"""`jobs.list_all` reads the pages after the first concurrently: same requests, same order.

An in-memory server (httpx.MockTransport) answers `GET /api/v1/jobs/` from a list of jobs,
so hundreds of jobs cost nothing and the server's behaviour (offset ignored, 401s) is chosen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest

from dumont_plan.client import DumontClient

TOKEN = "t-good"


class JobsServer:
    """Answers the jobs collection; records each request's offset and the busiest moment."""

    def __init__(self, count: int, *, honour_offset: bool = True, delay: float = 0.0) -> None:
        self.jobs = [
            {"id": f"job_{i:05d}", "name": f"n{i}", "status": "completed"} for i in range(count)
        ]
        self.honour_offset = honour_offset
        self.delay = delay
        self.token = TOKEN
        self.offsets: list[int] = []
        self.logins = 0
        self.revoke_after_first_page = False
        self.in_flight = 0
        self.most_in_flight = 0
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        time.sleep(self.delay)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return httpx.Response(401, json={"error": "token refused"})
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.offsets.append(int(request.url.params.get("offset", "0")))
        try:
            time.sleep(self.delay)  # a slow answer: the pages' requests overlap
            limit = int(request.url.params["limit"])
            offset = int(request.url.params.get("offset", "0")) if self.honour_offset else 0
            page = self.jobs[offset : offset + limit]
            if offset == 0 and self.revoke_after_first_page:  # every later page is refused
                self.revoke_after_first_page = False
                self.token = "t-revoked"
            return httpx.Response(200, json={"jobs": page, "total": len(self.jobs)})
        finally:
            with self.lock:
                self.in_flight -= 1

    def login(self) -> str:
        with self.lock:
            self.logins += 1
        self.token = f"t-fresh-{self.logins}"
        return self.token


def client_for(
    server: JobsServer, token: str = TOKEN, reauthenticate: Callable[[], str | None] | None = None
) -> DumontClient:
    http = httpx.Client(base_url="http://jobs.test", transport=httpx.MockTransport(server))
    return DumontClient(http, token, reauthenticate=reauthenticate)


def test_350_jobs_come_back_complete_and_in_order_in_4_requests() -> None:
    server = JobsServer(350, delay=0.05)
    client = client_for(server)
    jobs = client.jobs.list_all()
    assert [j.id for j in jobs] == [j["id"] for j in server.jobs]
    assert client.transport.request_count == 4
    assert sorted(server.offsets) == [0, 100, 200, 300]
    assert server.offsets[0] == 0  # the first page alone says how many are left
    assert server.most_in_flight == 3  # pages 2-4 together


@pytest.mark.parametrize(("count", "requests"), [(0, 1), (100, 1), (101, 2), (1000, 10)])
def test_the_requests_are_those_of_a_sequential_read(count: int, requests: int) -> None:
    server = JobsServer(count)
    client = client_for(server)
    assert len(client.jobs.list_all()) == count
    assert client.transport.request_count == requests
    assert sorted(server.offsets) == list(range(0, max(count, 1), 100))


def test_the_request_count_is_exact_under_concurrency() -> None:
    server = JobsServer(2000, delay=0.002)
    client = client_for(server)
    workers = [threading.Thread(target=client.jobs.list_all) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert client.transport.request_count == len(server.offsets) == 6 * 20


def test_a_server_that_ignores_offset_gives_its_one_page_once() -> None:
    server = JobsServer(350, honour_offset=False)
    client = client_for(server)
    jobs = client.jobs.list_all()
    assert [j.id for j in jobs] == [j["id"] for j in server.jobs[:100]]
    assert client.transport.request_count == 4  # as many as `total` asks for, no more


def test_a_refused_token_logs_in_once_for_all_the_pages() -> None:
    server = JobsServer(1000, delay=0.02)
    server.revoke_after_first_page = True
    client = client_for(server, reauthenticate=server.login)
    jobs = client.jobs.list_all()
    assert [j.id for j in jobs] == [j["id"] for j in server.jobs]
    assert server.logins == 1  # one login for the 4 threads refused together
    assert client.token == "t-fresh-1"
    assert client.transport.request_count == 10 + 4  # the 4 refused pages sent again
