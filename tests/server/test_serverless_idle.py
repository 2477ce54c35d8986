"""Serverless idle detection over loopback, on real instance processes: idle_since, the
timeout (on the server's policy clock, advanced by the test hook: no sleeping through it), the
threshold against a process holding a known CPU share, agent heartbeats."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server.instancefixtures import (
    delete_all,
    fast_server_fixture,
    sandbox_tag,
    workspace,
)
from tests.server.serverlessfixtures import (
    BUSY,
    SLEEPER,
    advance,
    duty_cycle,
    enable,
    instance,
    paused,
    reconcile,
    running_instance,
    sampled,
    status,
    until_status,
)
from tests.support import LocalServer, UserSession, new_user

ISO_SECONDS = 19  # "2026-01-01T00:00:00"


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    yield from fast_server_fixture(tmp_path_factory)


@pytest.fixture
def owner(fast: LocalServer) -> Iterator[UserSession]:
    session = new_user(fast.url)
    yield session
    with session.http() as http:
        delete_all(http)


def test_idle_detected(owner: UserSession) -> None:
    """An idle instance gets idle_since; a busy one does not."""
    with owner.http() as http:
        idle = running_instance(http, SLEEPER)
        busy = running_instance(http, BUSY)
        for iid in (idle, busy):
            enable(http, iid, mode="economic", idle_timeout_seconds=3600)  # threshold 5 %
        quiet = until_status(http, idle, sampled)
        loaded = until_status(http, busy, sampled)
        reconcile(http)
        quiet, loaded = status(http, idle), status(http, busy)
    assert quiet["util_source"] == "cpu" and quiet["current_gpu_util"] < 5
    assert quiet["idle_since"] is not None
    assert quiet["will_pause_at"] is not None
    # A spinning process: at least its share of a loaded machine (2 cores, load ~10: 20 %).
    assert loaded["current_gpu_util"] > 10
    assert (loaded["idle_since"], loaded["will_pause_at"]) == (None, None)


def test_auto_pause_after_idle_timeout_and_not_before(owner: UserSession) -> None:
    with owner.http() as http:
        iid = running_instance(http, SLEEPER)
        enable(http, iid, mode="economic", idle_timeout_seconds=30)
        body = until_status(http, iid, lambda b: b["idle_since"] is not None)
        # will_pause_at is idle_since + the timeout.
        since, at = body["idle_since"][:ISO_SECONDS], body["will_pause_at"][:ISO_SECONDS]
        assert (int(at[-2:]) - int(since[-2:])) % 60 == 30
        advance(http, 20)
        reconcile(http)
        assert status(http, iid)["is_paused"] is False
        assert instance(http, iid)["actual_status"] == "running"
        advance(http, 12)
        body = until_status(http, iid, paused)
        assert (body["status"], body["paused_mode"], body["will_pause_at"]) == (
            "paused",
            "economic",
            None,
        )
        assert instance(http, iid)["actual_status"] == "stopped"


def test_idle_timeout_honoured(owner: UserSession) -> None:
    """Two idle instances, 5 s and 120 s: past 10 s only the first is paused."""
    with owner.http() as http:
        short = running_instance(http, None)
        long = running_instance(http, None)
        enable(http, short, mode="economic", idle_timeout_seconds=5)
        enable(http, long, mode="economic", idle_timeout_seconds=120)
        for iid in (short, long):
            until_status(http, iid, lambda b: b["idle_since"] is not None)
        advance(http, 10)
        until_status(http, short, paused)
        reconcile(http)
        assert status(http, long)["is_paused"] is False
        advance(http, 115)
        until_status(http, long, paused)


@pytest.mark.slow
def test_gpu_threshold_honoured(owner: UserSession) -> None:
    """A process holding about X = 15 % of a core pauses under a threshold of X+10, not under
    X-10. (15 %, not more: it is the share such a process still gets on the test machine, 2
    cores shared by a load of ~10; a duty-cycled process never uses more than its share.)"""
    with owner.http() as http:
        under = running_instance(http, duty_cycle(15))
        over = running_instance(http, duty_cycle(15))
        enable(http, under, mode="economic", idle_timeout_seconds=3, gpu_threshold=25)
        enable(http, over, mode="economic", idle_timeout_seconds=3, gpu_threshold=5)
        for iid in (under, over):
            until_status(http, iid, sampled)
        measured = until_status(http, over, lambda b: b["current_gpu_util"] >= 5)
        assert measured["current_gpu_util"] < 25, measured
        for _ in range(3):  # measured intervals past the timeout on the policy clock
            advance(http, 4)
            reconcile(http)
        until_status(http, under, paused)
        body = status(http, over)
        assert body["is_paused"] is False, body
        assert instance(http, over)["actual_status"] == "running"


def test_a_fresh_heartbeat_wins_over_the_cpu_sample(owner: UserSession) -> None:
    with owner.http() as http:
        iid = running_instance(http, SLEEPER)
        enable(http, iid, mode="fast", idle_timeout_seconds=2, gpu_threshold=50)
        until_status(http, iid, sampled)
        beat = http.post("/api/v1/agent/status", json={"instance_id": iid, "gpu_utilization": 90})
        assert beat.status_code == 200, beat.text
        advance(http, 10)
        body = status(http, iid)
        assert (body["util_source"], body["current_gpu_util"], body["is_paused"]) == (
            "agent",
            90,
            False,
        )
        # An idle heartbeat: the instance is idle from now on, and pauses after the timeout.
        http.post("/api/v1/agent/status", json={"instance_id": iid, "gpu_utilization": 1.5})
        reconcile(http)
        assert status(http, iid)["idle_since"] is not None
        advance(http, 3)
        until_status(http, iid, paused)


def instance_pid(server: LocalServer, instance_id: int) -> int:
    """A host pid of one of the instance's processes (found by its sandbox tag)."""
    tag = sandbox_tag(instance_id, server)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if tag in (entry / "environ").read_bytes().split(b"\0"):
                    return int(entry.name)
            except OSError:
                continue
    raise AssertionError(f"no process of instance {instance_id}")


# The instance's own agent: a loop in its sandbox that POSTs heartbeats with the token and URL
# its environment carries (no user token inside the workload).
AGENT = """exec python3 -c '
import json, os, time, urllib.request
env = os.environ
body = {"instance_id": "vast_" + env["DUMONT_INSTANCE_ID"], "gpu_utilization": 88}
headers = {"Content-Type": "application/json", "X-Dumont-Agent-Token": env["DUMONT_AGENT_TOKEN"]}
while True:
    request = urllib.request.Request(env["DUMONT_AGENT_URL"], json.dumps(body).encode(), headers)
    with urllib.request.urlopen(request) as answer:
        open("agent.log", "a").write(str(answer.status) + "\\n")
    time.sleep(0.3)
'"""


def test_the_instances_own_agent_reports_with_its_agent_token(
    fast: LocalServer, owner: UserSession
) -> None:
    with owner.http() as http:
        iid = running_instance(http, AGENT)
        other = running_instance(http, SLEEPER)
        enable(http, iid, mode="economic", idle_timeout_seconds=2, gpu_threshold=50)
        body = until_status(http, iid, lambda b: b["util_source"] == "agent")
        assert body["current_gpu_util"] == 88 and body["idle_since"] is None
        advance(http, 10)
        assert status(http, iid)["is_paused"] is False
    log = (workspace(fast, iid) / "agent.log").read_text().split()
    assert set(log) == {"200"}
    token = next(
        line.split("=", 1)[1]
        for line in Path(f"/proc/{instance_pid(fast, iid)}/environ")
        .read_bytes()
        .decode()
        .split("\0")
        if line.startswith("DUMONT_AGENT_TOKEN=")
    )
    with httpx.Client(base_url=fast.url, timeout=30) as anonymous:
        own = {"X-Dumont-Agent-Token": token}
        # The token speaks for its own instance only; a forged one is nobody.
        response = anonymous.post("/api/v1/agent/status", json={"instance_id": other}, headers=own)
        assert response.status_code == 403
        forged = {"X-Dumont-Agent-Token": f"{iid}.{'0' * 64}"}
        response = anonymous.post("/api/v1/agent/status", json={"instance_id": iid}, headers=forged)
        assert response.status_code == 401
        assert anonymous.post("/api/v1/agent/status", json={"instance_id": iid}).status_code == 401
