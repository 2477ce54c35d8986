"""Serverless webhooks over loopback: a real receiver gets signed events (paused, woken,
wake_failed), a 500 is retried, the delivery log shows it, the secret never comes back."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from dumont_plan.server.provider.webhooks import seal, signature, unseal
from tests.server.instancefixtures import delete_all, fast_server_fixture, wait_until
from tests.server.serverlessfixtures import (
    SERVERLESS,
    advance,
    enable,
    paused,
    running_instance,
    status,
    until_status,
)
from tests.support import LocalServer, UserSession, new_user

SECRET = "whsec-test-0123456789"


@dataclass
class Receiver:
    """A loopback HTTP server that records each POST and answers the queued statuses
    (then 200)."""

    answers: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                code = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), found.handler())
    found.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/dumont"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    yield from fast_server_fixture(tmp_path_factory)


@pytest.fixture
def owner(fast: LocalServer) -> Iterator[UserSession]:
    session = new_user(fast.url)
    yield session
    with session.http() as http:
        delete_all(http)


def verify(headers: dict[str, str], body: bytes, secret: str, tolerance: float = 300) -> bool:
    """The receiver's side of the README recipe."""
    parts = dict(item.split("=", 1) for item in headers["x-dumont-signature"].split(","))
    timestamp = int(parts["t"])
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), parts["v1"])


def events(receiver: Receiver) -> list[str]:
    return [json.loads(body)["event"] for _, body in receiver.received]


def test_webhooks_are_signed_and_retried_after_a_500(
    owner: UserSession, receiver: Receiver
) -> None:
    receiver.answers = [500]
    with owner.http() as http:
        iid = running_instance(http)
        answer = enable(
            http,
            iid,
            mode="economic",
            idle_timeout_seconds=5,
            webhook_url=receiver.url,
            webhook_secret=SECRET,
        )
        assert answer["webhook_secret_set"] is True
        assert SECRET not in json.dumps(answer) and SECRET not in json.dumps(status(http, iid))
        until_status(http, iid, lambda b: b["idle_since"] is not None)
        advance(http, 10)
        until_status(http, iid, paused)
        # The first delivery answers 500; the retry (after backoff) gets through.
        wait_until(lambda: len(receiver.received) >= 2, timeout=30)
        assert events(receiver)[:2] == ["paused", "paused"]
        for headers, body in receiver.received:
            assert verify(headers, body, SECRET)
            assert not verify(headers, body, "another-secret")
            assert headers["x-dumont-event"] == "paused"
        first, second = (json.loads(body) for _, body in receiver.received[:2])
        assert first == second  # the same event, sent again
        assert (first["instance_id"], first["mode"]) == (iid, "economic")
        assert first["data"]["reason"] == "idle"

        assert http.post(f"{SERVERLESS}/wake/{iid}").status_code == 200
        wait_until(lambda: "woken" in events(receiver), timeout=30)
        woken = json.loads(receiver.received[-1][1])
        assert woken["data"]["cold_start_seconds"] > 0

        log = http.get(f"{SERVERLESS}/webhooks/{iid}").json()
        assert log["count"] == 2
        paused_entry, woken_entry = log["deliveries"]
        assert (paused_entry["event"], paused_entry["status"], paused_entry["attempts"]) == (
            "paused",
            "delivered",
            2,
        )
        assert paused_entry["last_status_code"] == 200 and paused_entry["signed"] is True
        assert woken_entry["event"] == "woken"
        assert SECRET not in json.dumps(log)


def test_wake_failed_is_sent_and_a_dead_receiver_never_blocks_the_reconciler(
    owner: UserSession, receiver: Receiver
) -> None:
    with owner.http() as http:
        iid = running_instance(http)
        dead = running_instance(http)
        enable(
            http,
            iid,
            mode="spot",
            idle_timeout_seconds=5,
            max_price=0.0001,
            webhook_url=receiver.url,
        )
        # A receiver that never answers (nothing listens on port 9).
        enable(
            http, dead, mode="economic", idle_timeout_seconds=5, webhook_url="http://127.0.0.1:9/"
        )
        for instance_id in (iid, dead):
            until_status(http, instance_id, lambda b: b["idle_since"] is not None)
        advance(http, 10)
        until_status(http, iid, paused)
        until_status(http, dead, paused)
        assert http.post(f"{SERVERLESS}/wake/{iid}").status_code == 409
        wait_until(lambda: "wake_failed" in events(receiver), timeout=30)
        failed = json.loads(receiver.received[-1][1])
        assert "max price" in failed["data"]["reason"]
        assert "x-dumont-signature" not in receiver.received[-1][0]  # no secret: unsigned
        started = time.monotonic()
        http.post("/api/v1/_local/reconcile")
        assert time.monotonic() - started < 5
        log = http.get(f"{SERVERLESS}/webhooks/{dead}").json()["deliveries"]
        assert log[0]["status"] == "pending" and log[0]["last_error"]


def test_sealed_secrets_and_signatures() -> None:
    sealed = seal("server-secret", SECRET)
    assert SECRET not in sealed and sealed != seal("server-secret", SECRET)  # random nonce
    assert unseal("server-secret", sealed) == SECRET
    assert unseal("another-server-secret", sealed) is None
    tampered = sealed[:-4] + ("AAAA" if sealed[-4:] != "AAAA" else "BBBB")
    assert unseal("server-secret", tampered) is None
    body = b'{"event":"paused"}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature(SECRET, 1700000000, body) == f"t=1700000000,v1={expected}"
