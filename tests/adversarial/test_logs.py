"""Job logs an attacker (or a chatty job) makes huge (issue 10, item 4).

- `?tail=N` reads O(tail) bytes, at most 1 MiB, whatever the line lengths (a 64 MB line without
  a newline made it quadratic: minutes, and /health stalled meanwhile);
- `?offset=B` answers only what follows byte B, with `next_offset`, so a follower fetches only
  what is new (the CLI's `--follow` downloaded the whole log every second);
- a per-job cap keeps the head and the last part of the log, and says so in it;
- /health stays responsive while a job writes 1 GB and someone reads its log.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server.jobfixtures import (
    GATE,
    JOBS,
    create_job,
    job_dir,
    open_gate,
    wait_for,
    wait_until,
)
from tests.support import LocalServer, UserSession, cli_env, new_user, run_cli

MiB = 1024 * 1024


def get_logs(user: UserSession, job_id: str, **params: int) -> httpx.Response:
    with user.http() as http:
        return http.get(f"{JOBS}{job_id}/logs", params=params)


def test_tail_of_a_huge_line_is_bounded_and_fast(server: LocalServer, user: UserSession) -> None:
    job = create_job(user, name="long-line", command="echo start", timeout_minutes=10)
    wait_for(user, job["id"], "completed")
    with open(job_dir(server, job["id"]) / "job.log", "ab") as log:
        for _ in range(64):
            log.write(b"x" * MiB)  # one 64 MB line, no newline
    started = time.monotonic()
    answer = get_logs(user, job["id"], tail=1)
    elapsed = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    text = answer.json()["logs"]
    assert 0 < len(text) <= MiB
    assert set(text) == {"x"}
    assert elapsed < 3, f"tail=1 of a 64 MB line took {elapsed:.1f}s"
    two = get_logs(user, job["id"], tail=2).json()["logs"]
    assert "start" not in two  # still bounded: the end of the long line only
    assert 0 < len(two) <= MiB


def test_offset_answers_only_what_is_new(server: LocalServer, user: UserSession) -> None:
    job = create_job(
        user,
        name="offsets",
        command=f"echo first line; echo é-second; {GATE}; echo third line",
        timeout_minutes=10,
    )
    wait_until(lambda: "é-second" in get_logs(user, job["id"]).json()["logs"], what="two lines")
    first = get_logs(user, job["id"], offset=0).json()
    assert first["logs"] == "first line\né-second\n"
    assert first["next_offset"] == len(first["logs"].encode()) == first["size"]
    empty = get_logs(user, job["id"], offset=first["next_offset"]).json()
    assert empty["logs"] == ""
    assert empty["next_offset"] == first["next_offset"]
    open_gate(server, job["id"])
    wait_for(user, job["id"], "completed")
    rest = get_logs(user, job["id"], offset=first["next_offset"]).json()
    assert rest["logs"] == "third line\n"
    assert rest["next_offset"] == rest["size"] == first["size"] + len("third line\n")
    # Inside a two-byte character: the piece starts there (undecodable bytes replaced).
    middle = get_logs(user, job["id"], offset=len("first line\n") + 1).json()
    assert middle["logs"].endswith("-second\nthird line\n")
    both = get_logs(user, job["id"], offset=0, tail=1)
    assert both.status_code == 422
    beyond = get_logs(user, job["id"], offset=2**62).json()
    assert (beyond["logs"], beyond["next_offset"]) == ("", 2**62)
    assert get_logs(user, job["id"], offset=2**63).status_code == 422
    capabilities = httpx.get(server.url + "/health", timeout=10).json()["capabilities"]
    assert {"jobs.logs-offset", "jobs.log-cap"} <= set(capabilities)


class CountingProxy:
    """A TCP relay to the server that counts the bytes the server sends back."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("http://").rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.received = 0
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(self.target)
                self.sockets += [client, upstream]
                threading.Thread(
                    target=self.pipe, args=(client, upstream, False), daemon=True
                ).start()
                threading.Thread(
                    target=self.pipe, args=(upstream, client, True), daemon=True
                ).start()

    def pipe(self, source: socket.socket, sink: socket.socket, count: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if count:
                    with self.lock:
                        self.received += len(data)
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            sock.close()


def test_follow_fetches_only_what_is_new(server: LocalServer, tmp_path: Path) -> None:
    user = new_user(server.url)
    job = create_job(
        user,
        name="follow",
        command=f"head -c 300000 /dev/zero | tr '\\0' a; echo; {GATE}; echo tail-line",
        timeout_minutes=10,
    )
    wait_until(
        lambda: "a" * 300000 in get_logs(user, job["id"]).json()["logs"], what="the big line"
    )
    home = tmp_path / "home"
    home.mkdir()
    proxy = CountingProxy(server.url)
    gate = threading.Timer(2.0, open_gate, args=(server, job["id"]))
    gate.start()
    try:
        done = run_cli(
            ["job", "logs", job["id"], "--follow", "--poll", "0.2"],
            cli_env(home, proxy.url, user.token),
            timeout=60,
        )
    finally:
        gate.cancel()
        proxy.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "tail-line"
    assert "a" * 300000 in done.stdout
    # The big line came once (about 2 s of polls every 0.2 s); later reads asked for what is new.
    assert proxy.received < 2 * 300000, f"the follower downloaded {proxy.received} bytes"


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[LocalServer]:
    server = LocalServer(tmp_path / "capped", extra_args=["--log-cap-bytes", "65536"]).start()
    yield server
    server.stop()


def test_a_log_past_its_cap_keeps_its_head_and_its_last_part(capped: LocalServer) -> None:
    user = new_user(capped.url)
    job = create_job(
        user,
        name="chatty",
        command="for i in $(seq 1 40000); do echo line-$i; done",
        timeout_minutes=10,
    )
    wait_for(user, job["id"], "completed")
    size = (job_dir(capped, job["id"]) / "job.log").stat().st_size
    assert size <= 65536
    text = get_logs(user, job["id"]).json()["logs"]
    lines = text.splitlines()
    assert lines[0] == "line-1"
    assert lines[-1] == "line-40000"
    assert "bytes dropped here; the head above and the last part below are kept" in text
    assert "line-20000\n" not in text
    whole = get_logs(user, job["id"], offset=0).json()
    assert whole["size"] == sum(len(f"line-{i}\n") for i in range(1, 40001))
    assert get_logs(user, job["id"], tail=2).json()["logs"] == "line-39999\nline-40000\n"


@pytest.mark.slow
def test_health_stays_fast_while_a_job_writes_a_gigabyte(server: LocalServer) -> None:
    user = new_user(server.url)
    job = create_job(
        user,
        name="firehose",
        command="yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 1000000000",
        timeout_minutes=10,
    )
    stop = threading.Event()

    def read_logs() -> None:
        with user.http() as http:
            while not stop.is_set():
                http.get(f"{JOBS}{job['id']}/logs", timeout=60)

    reader = threading.Thread(target=read_logs)
    reader.start()
    latencies: list[float] = []
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                started = time.monotonic()
                assert http.get("/health").status_code == 200
                latencies.append(time.monotonic() - started)
                if len(latencies) % 10 == 0:
                    status = http.get(
                        f"{JOBS}{job['id']}", headers={"Authorization": f"Bearer {user.token}"}
                    ).json()["status"]
                    if status in ("completed", "failed", "cancelled", "timeout"):
                        break
                time.sleep(0.02)
    finally:
        stop.set()
        reader.join()
    assert wait_for(user, job["id"], "completed")["status"] == "completed"
    p99 = statistics.quantiles(latencies, n=100)[98]
    assert len(latencies) > 20
    assert p99 < 0.1, f"/health p99 {p99 * 1000:.0f} ms over {len(latencies)} samples"
    assert (job_dir(server, job["id"]) / "job.log").stat().st_size <= 32 * MiB
