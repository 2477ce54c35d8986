"""Retries: idempotent calls only, Retry-After honoured, bounded (real app, injected faults).

No test sleeps: the client's `sleep` is a recorder.
"""

from __future__ import annotations

import contextlib
import email.utils
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from dumont_plan.client import DumontClient, RetryPolicy
from dumont_plan.client.base import parse_retry_after
from dumont_plan.errors import ConnectError, RateLimitedError, ServiceUnavailableError
from dumont_plan.server.app import create_app
from dumont_plan.server.settings import ServerSettings
from tests.support import PASSWORD

ME = "GET /api/v1/auth/me"
REGISTER = "POST /api/v1/auth/register"


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class Harness:
    def __init__(self, http: TestClient) -> None:
        self.http = http
        self.counts = http.app.state.request_counts  # type: ignore[attr-defined]
        self.token = http.post(
            "/api/v1/auth/register", json={"email": "retry@example.com", "password": PASSWORD}
        ).json()["token"]
        self.sleeps = Sleeps()

    def client(self, token: str | None = None, **policy: float) -> DumontClient:
        retry = RetryPolicy(rng=lambda: 0.0, **policy)  # type: ignore[arg-type]
        return DumontClient(self.http, token or self.token, retry=retry, sleep=self.sleeps)

    def inject(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        body = {"count": count, "status": status, "retry_after": retry_after}
        assert self.http.post("/api/v1/_local/faults", json=body).status_code == 200


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    settings = ServerSettings(data_dir=tmp_path, enable_test_hooks=True)
    with TestClient(create_app(settings, background=False)) as http:
        yield Harness(http)


@pytest.mark.parametrize("status", [503, 429])
def test_get_is_retried_after_retry_after(harness: Harness, status: int) -> None:
    harness.inject(status, retry_after=7)
    answer = harness.client().auth.me()
    assert answer["user"]["email"] == "retry@example.com"
    assert harness.sleeps == [7.0]
    assert harness.counts[ME] == 2


@pytest.mark.parametrize("status", [502, 503, 504, 429])
def test_without_retry_after_the_backoff_grows(harness: Harness, status: int) -> None:
    harness.inject(status, count=2)
    harness.client(base=0.5).auth.me()
    # rng 0 gives the low end of each jittered window: half of base * 2**attempt.
    assert harness.sleeps == [0.25, 0.5]
    assert harness.counts[ME] == 3


def test_backoff_jitter_stays_within_its_window() -> None:
    for rng in (0.0, 0.5, 0.999):
        policy = RetryPolicy(base=1.0, cap=10.0, rng=lambda rng=rng: rng)
        assert [policy.delay(a, None) for a in range(5)] == [
            min(10.0, 2**a) / 2 + rng * min(10.0, 2**a) / 2 for a in range(5)
        ]


def test_retry_after_is_capped(harness: Harness) -> None:
    harness.inject(503, retry_after=3600)
    harness.client(cap=5).auth.me()
    assert harness.sleeps == [5.0]


def test_retries_stop_after_the_policy_attempts(harness: Harness) -> None:
    harness.inject(503, count=10, retry_after=1)
    with pytest.raises(ServiceUnavailableError):
        harness.client(attempts=3).auth.me()
    assert harness.counts[ME] == 3
    assert harness.sleeps == [1.0, 1.0]


def test_rate_limit_surfaces_after_the_last_attempt(harness: Harness) -> None:
    harness.inject(429, count=10, retry_after=2)
    with pytest.raises(RateLimitedError):
        harness.client(attempts=2).auth.me()
    assert harness.counts[ME] == 2
    assert harness.sleeps == [2.0]


def test_a_creating_post_is_never_retried(harness: Harness) -> None:
    harness.inject(503, count=3, retry_after=7)
    with pytest.raises(ServiceUnavailableError):
        harness.client().auth.register("new@example.com", PASSWORD)
    assert harness.counts[REGISTER] == 2  # the harness's own register, then exactly one
    assert harness.sleeps == []


def test_a_post_marked_idempotent_is_retried(harness: Harness) -> None:
    harness.inject(503, retry_after=7)
    answer = harness.client().auth.login("retry@example.com", PASSWORD)
    assert answer["success"] is True
    assert harness.sleeps == [7.0]


def test_errors_other_than_busy_are_not_retried(harness: Harness) -> None:
    harness.inject(500)
    with pytest.raises(Exception, match=r"\(500\)"):
        harness.client().auth.me()
    assert harness.counts[ME] == 1
    assert harness.sleeps == []


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_refused_connection_fails_at_once() -> None:
    sleeps = Sleeps()
    url = f"http://127.0.0.1:{closed_port()}"
    with httpx.Client(base_url=url, timeout=5) as http:
        client = DumontClient(
            http, "token", retry=RetryPolicy(attempts=3, base=1.0, rng=lambda: 0.0), sleep=sleeps
        )
        with pytest.raises(ConnectError) as caught:
            client.auth.me()
    assert sleeps == []  # nothing listens: waiting would not change it
    assert client.transport.request_count == 1
    assert str(caught.value) == (
        f"cannot reach the Dumont API at {url} (connection refused: nothing listens there); "
        "check DUMONT_API_URL (unset it to use the local control plane dumont starts by itself)"
    )


def test_connect_errors_on_a_creating_post_are_not_retried() -> None:
    sleeps = Sleeps()
    with httpx.Client(base_url=f"http://127.0.0.1:{closed_port()}", timeout=5) as http:
        client = DumontClient(http, retry=RetryPolicy(attempts=3), sleep=sleeps)
        with pytest.raises(ConnectError):
            client.auth.register("new@example.com", PASSWORD)
    assert sleeps == []
    assert client.transport.request_count == 1


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("7", 7.0), ("0.5", 0.5), ("-3", 0.0), ("", None), (None, None), ("soon", None)],
)
def test_parse_retry_after_seconds(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0


class BreakingServer:
    """A loopback server that reads each request and then resets the connection (RST)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests = 0
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                self.requests += 1
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.sock.close()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()


@pytest.fixture
def breaking() -> Iterator[BreakingServer]:
    srv = BreakingServer()
    yield srv
    srv.close()


def test_a_connection_broken_mid_get_is_retried(breaking: BreakingServer) -> None:
    sleeps = Sleeps()
    with httpx.Client(base_url=breaking.url, timeout=5) as http:
        client = DumontClient(
            http, "token", retry=RetryPolicy(attempts=3, rng=lambda: 0.0), sleep=sleeps
        )
        with pytest.raises(ConnectError) as caught:
            client.auth.me()
    assert breaking.requests == 3
    assert len(sleeps) == 2
    assert str(caught.value).startswith(
        f"the connection to the Dumont API at {breaking.url} broke during GET /api/v1/auth/me ("
    )


def test_a_connection_broken_mid_create_is_not_retried(breaking: BreakingServer) -> None:
    sleeps = Sleeps()
    with httpx.Client(base_url=breaking.url, timeout=5) as http:
        client = DumontClient(http, retry=RetryPolicy(attempts=3), sleep=sleeps)
        with pytest.raises(ConnectError) as caught:
            client.auth.register("new@example.com", PASSWORD)
    assert breaking.requests == 1
    assert sleeps == []
    assert "check the result before retrying" in str(caught.value)
