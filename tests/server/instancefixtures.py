"""Helpers for the instance, offer and history tests: a fast private server, the market, polling."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dumont_plan.server.provider.instance_processes import scope_of
from dumont_plan.server.provider.market import Machine, get_market
from tests.support import LocalServer

# Boots last boot_seconds / 10 (0.03-0.25 s) on the fast server.
FAST_ENV = {"DUMONT_SERVER_TIME_SCALE": "10"}
MARKET = get_market(7, 200)  # ServerSettings' default market_seed / market_size
INSTANCES = "/api/v1/instances"
HISTORY = "/api/v1/machines/history"


def fast_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    srv = LocalServer(tmp_path_factory.mktemp("fast-instances"), env=FAST_ENV).start()
    try:
        yield srv
    finally:
        srv.stop()


def workspace(server: LocalServer, instance_id: int) -> Path:
    return server.data_dir / "sandboxes" / "instances" / str(instance_id) / "workspace"


def sandbox_tag(instance_id: int, server: LocalServer | None = None) -> bytes:
    """The environment entry that tags an instance's processes: scoped by the data dir of a
    served control plane (`server`), bare for an in-process app."""
    scope = f"@{scope_of(server.data_dir)}" if server is not None else ""
    return f"DUMONT_SANDBOX_ID=instance-{instance_id}{scope}".encode()


def host_pid(instance_id: int, sandbox_pid: int, server: LocalServer | None = None) -> int | None:
    """This machine's pid of the process an instance (of `server`, None: an in-process app)
    sees as `sandbox_pid` (its `$$`): the instance has a PID namespace of its own. None when
    no such process runs."""
    tag = sandbox_tag(instance_id, server)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if tag not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            status = (entry / "status").read_text()
        except OSError:
            continue
        lines = status.splitlines()
        nspid = next((line.split()[1:] for line in lines if line.startswith("NSpid:")), [])
        if nspid and int(nspid[-1]) == sandbox_pid:
            return int(entry.name)
    return None


def create(http: httpx.Client, offer_id: int, **body: Any) -> dict[str, Any]:
    response = http.post(INSTANCES, json={"offer_id": offer_id, **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def wait_for(
    http: httpx.Client,
    instance_id: int,
    done: Callable[[dict[str, Any]], bool],
    timeout: float = 60.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = http.get(f"{INSTANCES}/{instance_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if done(body):
            return body
        assert time.monotonic() < deadline, f"instance {instance_id} stuck: {body}"
        time.sleep(0.03)


def actual(want: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: body["actual_status"] == want


def wait_until(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.03)


def delete_all(http: httpx.Client) -> None:
    for instance in http.get(INSTANCES).json()["instances"]:
        http.delete(f"{INSTANCES}/{instance['id']}")


def machine_with(pattern: list[bool], taken: set[str] | None = None) -> Machine:
    """A one-GPU machine whose first boot attempts fail exactly as `pattern` says."""
    for m in MARKET.machines:
        if m.num_gpus != 1 or m.machine_id in (taken or set()):
            continue
        if [m.boot_fails(i) for i in range(len(pattern))] == pattern:
            return m
    raise AssertionError(f"no machine of the market boots like {pattern}")


def reliable_offer(http: httpx.Client, **filters: Any) -> dict[str, Any]:
    """A currently offered one-GPU offer on a machine that never fails to boot."""
    offers = http.get(
        f"{INSTANCES}/offers", params={"limit": 100, "min_inet_up": 0, **filters}
    ).json()["offers"]
    for offer in offers:
        machine = MARKET.by_offer(offer["id"])
        if machine is not None and machine.failure_probability == 0:
            return dict(offer)
    raise AssertionError(f"no reliable offer for {filters}")


def pid_running(pid: int) -> bool:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return raw[raw.rfind(")") + 2 :].split()[0] not in ("Z", "X")
