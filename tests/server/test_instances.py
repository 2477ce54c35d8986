"""Instances as local sandboxes: create -> loading -> running, processes, pause/resume/delete,
cost, errors and per-user isolation, over loopback on a private server with fast boots."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.server.instancefixtures import (
    FAST_ENV,
    HISTORY,
    INSTANCES,
    MARKET,
    actual,
    create,
    delete_all,
    fast_server_fixture,
    host_pid,
    pid_running,
    reliable_offer,
    wait_for,
    wait_until,
    workspace,
)
from tests.support import LocalServer, UserSession, assert_invisible_to, new_user

INSTANCE_KEYS = {
    # contract §3.2
    "id", "status", "actual_status", "gpu_name", "num_gpus", "gpu_ram", "cpu_cores", "cpu_ram",
    "disk_space", "dph_total", "public_ipaddr", "ssh_host", "ssh_port", "start_date", "label",
    "ports", "gpu_util", "gpu_temp", "cpu_util", "ram_used", "ram_total", "provider",
    "cpu_standby", "total_dph",
    # additive
    "machine_id", "offer_id", "region", "geolocation", "use_spot", "image", "status_msg",
    "total_cost",
    "billed_dph",
}  # fmt: skip


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    yield from fast_server_fixture(tmp_path_factory)


@pytest.fixture
def owner(fast: LocalServer) -> Iterator[UserSession]:
    session = new_user(fast.url)
    yield session
    with session.http() as http:
        delete_all(http)


def read_pids(server: LocalServer, instance_id: int) -> list[int]:
    """The host pids of the processes that wrote their `$$` to `pids` (0: already gone)."""
    path = workspace(server, instance_id) / "pids"
    if not path.exists():
        return []
    return [host_pid(instance_id, int(line), server) or 0 for line in path.read_text().split()]


def test_create_boots_from_loading_to_running(fast: LocalServer, owner: UserSession) -> None:
    with owner.http() as http:
        offer = reliable_offer(http, gpu_name="RTX 4090")
        created = create(http, offer["id"], label="dev", disk_size=20, ports=[8888])

        assert set(created) == INSTANCE_KEYS
        assert created["id"] >= 30000000
        assert (created["status"], created["actual_status"]) == ("running", "loading")
        assert created["ssh_host"] is None and created["ports"] is None
        assert created["provider"] == "local"
        assert created["offer_id"] == offer["id"]
        assert created["machine_id"] == offer["machine_id"]
        assert created["gpu_name"] == "RTX 4090"
        assert created["gpu_ram"] == offer["gpu_ram"] * 1024  # provider units: MB
        assert created["disk_space"] == 20
        assert created["label"] == "dev"
        assert created["region"] == offer["region"]
        assert created["geolocation"] == offer["geolocation"]
        assert workspace(fast, created["id"]).is_dir()

        ready = wait_for(http, created["id"], actual("running"))
        assert ready["status"] == "running"
        assert ready["ssh_host"] == "127.0.0.1" and ready["public_ipaddr"] == "127.0.0.1"
        assert isinstance(ready["ssh_port"], int)
        assert set(ready["ports"]) == {"22/tcp", "8080/tcp", "8888/tcp"}
        assert ready["cpu_util"] == 0.0  # no processes

        attempts = http.get(f"{HISTORY}/attempts").json()
        assert len(attempts) == 1
        assert attempts[0]["success"] is True
        assert attempts[0]["instance_id"] == str(created["id"])
        assert attempts[0]["provider"] == "local"
        assert attempts[0]["time_to_ready_seconds"] > 0

        # The rented machine is offered to nobody.
        anyone = http.get(f"{INSTANCES}/offers", params={"limit": 100, "min_inet_up": 0}).json()
        assert offer["id"] not in {o["id"] for o in anyone["offers"]}


def test_pause_stops_processes_keeps_disk_and_resume_restarts(
    fast: LocalServer, owner: UserSession
) -> None:
    command = "echo $$ >> pids; echo kept > data.txt; exec sleep 300"
    with owner.http() as http:
        instance = create(http, reliable_offer(http)["id"], onstart_cmd=command)
        iid = instance["id"]
        wait_for(http, iid, actual("running"))
        wait_until(lambda: len(read_pids(fast, iid)) == 1)
        first = read_pids(fast, iid)[0]
        assert pid_running(first)

        answer = http.post(f"{INSTANCES}/{iid}/pause")
        assert answer.status_code == 200
        assert answer.json() == {"success": True, "message": f"Instance {iid} paused successfully"}
        paused = http.get(f"{INSTANCES}/{iid}").json()
        assert (paused["status"], paused["actual_status"]) == ("stopped", "stopped")
        assert not pid_running(first)
        assert (workspace(fast, iid) / "data.txt").read_text() == "kept\n"

        listed = {
            word: [
                i["id"] for i in http.get(INSTANCES, params={"status": word}).json()["instances"]
            ]
            for word in ("paused", "stopped", "STOPPED", "running")
        }
        assert listed == {"paused": [iid], "stopped": [iid], "STOPPED": [iid], "running": []}

        answer = http.post(f"{INSTANCES}/{iid}/resume")
        assert answer.json() == {"success": True, "message": f"Instance {iid} resumed successfully"}
        wait_for(http, iid, actual("running"))
        wait_until(lambda: len(read_pids(fast, iid)) == 2)
        second = read_pids(fast, iid)[1]
        assert second != first and pid_running(second)
        running = http.get(INSTANCES, params={"status": "running"}).json()
        assert [i["id"] for i in running["instances"]] == [iid]

        answer = http.delete(f"{INSTANCES}/{iid}")
        assert answer.json() == {
            "success": True,
            "message": f"Instance {iid} destroyed successfully",
        }
        assert not pid_running(second)
        assert not workspace(fast, iid).parent.exists()
        assert http.get(f"{INSTANCES}/{iid}").status_code == 404
        assert http.get(INSTANCES).json() == {"instances": [], "count": 0}
        # Only the first boot is an attempt; resuming is not another one.
        assert len(http.get(f"{HISTORY}/attempts").json()) == 1


def test_delete_kills_processes_that_ignore_sigterm(fast: LocalServer, owner: UserSession) -> None:
    command = "trap '' TERM; echo $$ >> pids; while true; do sleep 0.1; done"
    with owner.http() as http:
        iid = create(http, reliable_offer(http)["id"], onstart_cmd=command)["id"]
        wait_for(http, iid, actual("running"))
        wait_until(lambda: len(read_pids(fast, iid)) == 1)
        pid = read_pids(fast, iid)[0]
        assert http.delete(f"{INSTANCES}/{iid}").status_code == 200
        assert not pid_running(pid)


def test_offer_returns_to_the_market_after_delete(owner: UserSession) -> None:
    with owner.http() as http:
        offer = reliable_offer(http, gpu_name="RTX 3090")
        iid = create(http, offer["id"])["id"]
        again = http.post(INSTANCES, json={"offer_id": offer["id"]})
        assert again.status_code == 400
        assert again.json() == {
            "error": f"Offer {offer['id']} is no longer available (already rented); "
            "search offers again and pick another"
        }
        http.delete(f"{INSTANCES}/{iid}")
        offers = http.get(
            f"{INSTANCES}/offers", params={"gpu_name": "RTX 3090", "limit": 100, "min_inet_up": 0}
        ).json()["offers"]
        assert offer["id"] in {o["id"] for o in offers}


def test_use_spot_rents_at_the_min_bid(owner: UserSession) -> None:
    with owner.http() as http:
        offer = reliable_offer(http, gpu_name="A100")
        machine = MARKET.by_offer(offer["id"])
        assert machine is not None
        instance = create(http, offer["id"], use_spot=True)
        now = time.time()
        assert instance["use_spot"] is True
        # Prices drift up to ~0.02 %/s: 1 % allows a slow machine ~50 s between the two reads.
        assert instance["dph_total"] == pytest.approx(machine.min_bid(now), rel=1e-2)
        assert instance["dph_total"] < machine.dph(now) * 0.7


def test_cost_accrues_while_running_and_slowly_while_stopped(owner: UserSession) -> None:
    with owner.http() as http:
        iid = create(http, reliable_offer(http, gpu_name="H100")["id"])["id"]
        wait_for(http, iid, actual("running"))

        def cost_over(seconds: float) -> float:
            before = http.get(f"{INSTANCES}/{iid}").json()["total_cost"]
            time.sleep(seconds)
            after: float = http.get(f"{INSTANCES}/{iid}").json()["total_cost"]
            return after - before

        running = cost_over(0.4)
        assert running > 0
        http.post(f"{INSTANCES}/{iid}/pause")
        stopped = cost_over(0.4)
        assert 0 <= stopped < running / 10


def test_idempotency_key_replays_the_create(owner: UserSession) -> None:
    with owner.http() as http:
        offer = reliable_offer(http)
        headers = {"Idempotency-Key": "inst-key-1"}
        first = http.post(INSTANCES, json={"offer_id": offer["id"]}, headers=headers)
        second = http.post(INSTANCES, json={"offer_id": offer["id"]}, headers=headers)
        assert first.status_code == second.status_code == 201
        assert first.json()["id"] == second.json()["id"]
        assert http.get(INSTANCES).json()["count"] == 1


def test_create_accepts_the_contract_body(owner: UserSession) -> None:
    body: dict[str, Any] = {
        "image": "ollama/ollama",
        "disk_size": 10,
        "skip-standby": True,
        "skip_validation": True,
        "ports": [8080, 11434],
    }
    with owner.http() as http:
        created = create(http, reliable_offer(http)["id"], **body)
        assert created["image"] == "ollama/ollama"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            {"offer_id": 1},
            404,
            "Offer 1 not found; search offers with GET /api/v1/instances/offers",
        ),
        ({"offer_id": "x"}, 422, "Validation error"),
        ({}, 422, "Validation error"),
        ({"offer_id": 1, "disk_size": 5}, 422, "Validation error"),
        ({"offer_id": 1, "ports": [0]}, 422, "Validation error"),
    ],
)
def test_create_rejects_bad_bodies(
    owner: UserSession, body: dict[str, Any], status: int, message: str
) -> None:
    with owner.http() as http:
        response = http.post(INSTANCES, json=body)
    assert response.status_code == status
    assert response.json()["error"] == message


def test_create_rejects_a_disk_larger_than_the_offer(owner: UserSession) -> None:
    with owner.http() as http:
        offer = reliable_offer(http)
        response = http.post(INSTANCES, json={"offer_id": offer["id"], "disk_size": 100000})
    assert response.status_code == 400
    assert response.json() == {
        "error": f"disk_size 100000 GB is above offer {offer['id']}'s disk of "
        f"{offer['disk_space']:g} GB; ask for less or pick another offer"
    }


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/v1/instances/99999999", 404),
        ("DELETE", "/api/v1/instances/99999999", 404),
        ("POST", "/api/v1/instances/99999999/pause", 404),
        ("POST", "/api/v1/instances/99999999/resume", 404),
        ("GET", "/api/v1/instances/abc", 422),
        ("POST", "/api/v1/instances/abc/pause", 422),
    ],
)
def test_unknown_and_malformed_ids(owner: UserSession, method: str, path: str, status: int) -> None:
    with owner.http() as http:
        response = http.request(method, path)
    assert response.status_code == status
    if status == 404:
        assert response.json() == {"error": "Instance 99999999 not found"}
    else:
        assert response.json()["error"] == "Validation error"


def test_instances_need_a_token(fast: LocalServer) -> None:
    response = httpx.get(fast.url + INSTANCES)
    assert response.status_code == 401
    assert response.json() == {"error": "Not authenticated"}


def test_instances_are_invisible_to_other_users(fast: LocalServer, owner: UserSession) -> None:
    with owner.http() as http:
        iid = create(http, reliable_offer(http)["id"], onstart_cmd="exec sleep 300")["id"]
        wait_for(http, iid, actual("running"))
    other = new_user(fast.url)
    assert_invisible_to(
        other,
        [
            ("GET", f"{INSTANCES}/{iid}"),
            ("POST", f"{INSTANCES}/{iid}/pause"),
            ("POST", f"{INSTANCES}/{iid}/resume"),
            ("DELETE", f"{INSTANCES}/{iid}"),
        ],
    )
    with other.http() as http:
        assert http.get(INSTANCES).json() == {"instances": [], "count": 0}
    with owner.http() as http:
        still = http.get(f"{INSTANCES}/{iid}").json()
        assert (still["status"], still["actual_status"]) == ("running", "running")


def test_processes_do_not_see_the_servers_secrets(fast: LocalServer, owner: UserSession) -> None:
    command = "env > env.txt"
    with owner.http() as http:
        iid = create(http, reliable_offer(http)["id"], onstart_cmd=command)["id"]
        wait_for(http, iid, actual("running"))
        path = workspace(fast, iid) / "env.txt"
        wait_until(lambda: path.exists() and "DUMONT_INSTANCE_ID" in path.read_text())
        env = path.read_text()
    assert f"DUMONT_INSTANCE_ID={iid}" in env
    # The one credential an instance gets is its own agent token (heartbeats of this instance
    # only: provider/agent.py), which is not the server's secret.
    lines = env.splitlines()
    own = [line for line in lines if line.startswith("DUMONT_AGENT_TOKEN=")]
    assert len(own) == 1 and own[0].startswith(f"DUMONT_AGENT_TOKEN={iid}.")
    assert "TOKEN" not in "\n".join(line for line in lines if line not in own)
    secret = (fast.data_dir / "jwt-secret").read_text().strip()
    assert secret not in env


def test_onstart_output_and_group_are_the_instances_own(
    fast: LocalServer, owner: UserSession
) -> None:
    command = "echo hello-from-onstart; echo $$ >> pids; exec sleep 300"
    with owner.http() as http:
        iid = create(http, reliable_offer(http)["id"], onstart_cmd=command)["id"]
        wait_for(http, iid, actual("running"))
        wait_until(lambda: len(read_pids(fast, iid)) == 1)
        pid = read_pids(fast, iid)[0]
        # Its own session and process group (bwrap's, its sandbox's init), not the server's.
        assert fast.proc is not None
        assert os.getsid(pid) != os.getsid(fast.proc.pid)
        assert os.getpgid(pid) not in (os.getpgid(fast.proc.pid), os.getpgrp())
        log = workspace(fast, iid).parent / "onstart.log"
        wait_until(lambda: "hello-from-onstart" in log.read_text())
        http.delete(f"{INSTANCES}/{iid}")
    assert not pid_running(pid)


@pytest.mark.slow
def test_a_restarted_control_plane_still_controls_running_instances(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data_dir = tmp_path_factory.mktemp("restart-instances")
    server = LocalServer(data_dir, env=FAST_ENV).start()
    try:
        session = new_user(server.url)
        with session.http() as http:
            iid = create(
                http, reliable_offer(http)["id"], onstart_cmd="echo $$ >> pids; exec sleep 300"
            )["id"]
            wait_for(http, iid, actual("running"))
            wait_until(lambda: len(read_pids(server, iid)) == 1)
        pid = read_pids(server, iid)[0]
        server.stop(reap=False)
        assert pid_running(pid)  # the machine outlives its control plane
        server.start()
        headers = {"Authorization": f"Bearer {session.token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
            again = http.get(f"{INSTANCES}/{iid}").json()
            assert again["actual_status"] == "running"
            assert http.post(f"{INSTANCES}/{iid}/pause").status_code == 200
            assert not pid_running(pid)
            assert http.delete(f"{INSTANCES}/{iid}").status_code == 200
    finally:
        server.stop()


def test_an_id_beyond_sqlites_integers_is_not_found(owner: UserSession) -> None:
    huge = 2**70
    with owner.http() as http:
        for method, path in [
            ("GET", f"{INSTANCES}/{huge}"),
            ("DELETE", f"{INSTANCES}/{huge}"),
            ("POST", f"{INSTANCES}/{huge}/pause"),
            ("POST", f"{INSTANCES}/{huge}/resume"),
        ]:
            answer = http.request(method, path)
            assert answer.status_code == 404, (method, path, answer.text)
            assert answer.json() == {"error": f"Instance {huge} not found"}
