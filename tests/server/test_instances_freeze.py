"""The provider's fast pause (SIGSTOP, for serverless `fast` mode) on an in-process app.

No route exposes it (the contract's pause stops the processes); the serverless feature calls
`pause_instance(..., freeze=True)`. Transitions happen on reads, so no reconciler is needed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dumont_plan.server.app import create_app
from dumont_plan.server.context import AppState
from dumont_plan.server.provider.instances import pause_instance, resume_instance
from dumont_plan.server.settings import ServerSettings
from tests.server.instancefixtures import INSTANCES, MARKET, host_pid


@pytest.fixture
def app_client(tmp_path: Path) -> Iterator[TestClient]:
    settings = ServerSettings(data_dir=tmp_path, extra={"time_scale": "10"})
    with TestClient(create_app(settings, background=False)) as client:
        yield client


def proc_state(pid: int) -> str:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rfind(")") + 2 :].split()[0]


def wait(check: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_freeze_suspends_and_resume_continues_the_same_process(
    app_client: TestClient, tmp_path: Path
) -> None:
    token = app_client.post(
        "/api/v1/auth/register", json={"email": "f@example.com", "password": "secret-pw"}
    ).json()["token"]
    app_client.headers["Authorization"] = f"Bearer {token}"
    state: AppState = app_client.app.state.dumont  # type: ignore[attr-defined]
    user_id = int(state.store.query_one("SELECT id FROM users")["id"])  # type: ignore[index]
    offer = next(m for m in MARKET.machines if m.failure_probability == 0 and m.num_gpus == 1)
    created = app_client.post(
        INSTANCES, json={"offer_id": offer.offer_id, "onstart_cmd": "echo $$ > pid; exec sleep 60"}
    )
    iid = created.json()["id"]
    pid_file = tmp_path / "sandboxes" / "instances" / str(iid) / "workspace" / "pid"
    wait(lambda: app_client.get(f"{INSTANCES}/{iid}").json()["actual_status"] == "running")
    wait(lambda: pid_file.exists() and pid_file.read_text().strip())
    found = host_pid(iid, int(pid_file.read_text()))
    assert found is not None
    pid = found

    pause_instance(state, user_id, iid, freeze=True)
    paused = app_client.get(f"{INSTANCES}/{iid}").json()
    assert (paused["status"], paused["actual_status"]) == ("stopped", "stopped")
    wait(lambda: proc_state(pid) == "T")

    resume_instance(state, user_id, iid)
    resumed = app_client.get(f"{INSTANCES}/{iid}").json()
    assert resumed["actual_status"] == "running"  # no boot: it continues at once
    wait(lambda: proc_state(pid) != "T")

    assert app_client.delete(f"{INSTANCES}/{iid}").status_code == 200
    wait(lambda: not Path(f"/proc/{pid}").exists() or proc_state(pid) in ("Z", "X"))


def named(name: str) -> list[int]:
    """Live processes whose argv[0] is `name`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv0 = (entry / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if argv0 == name.encode() and proc_state(int(entry.name)) not in ("Z", "X"):
                found.append(int(entry.name))
    return found


def test_freeze_suspends_also_a_process_that_cleared_its_environment(
    app_client: TestClient,
) -> None:
    token = app_client.post(
        "/api/v1/auth/register", json={"email": "g@example.com", "password": "secret-pw"}
    ).json()["token"]
    app_client.headers["Authorization"] = f"Bearer {token}"
    state: AppState = app_client.app.state.dumont  # type: ignore[attr-defined]
    user_id = int(state.store.query_one("SELECT id FROM users")["id"])  # type: ignore[index]
    offer = next(m for m in MARKET.machines if m.failure_probability == 0 and m.num_gpus == 1)
    marker = f"dumont-untagged-{uuid.uuid4().hex[:8]}"
    command = f"env -i /bin/bash -c 'exec -a {marker} sleep 60' & exec sleep 60"
    iid = app_client.post(INSTANCES, json={"offer_id": offer.offer_id, "onstart_cmd": command})
    iid = iid.json()["id"]
    wait(lambda: app_client.get(f"{INSTANCES}/{iid}").json()["actual_status"] == "running")
    wait(lambda: len(named(marker)) == 1)
    (untagged,) = named(marker)

    pause_instance(state, user_id, iid, freeze=True)
    wait(lambda: proc_state(untagged) == "T")
    resume_instance(state, user_id, iid)
    wait(lambda: proc_state(untagged) != "T")

    assert app_client.delete(f"{INSTANCES}/{iid}").status_code == 200
    wait(lambda: not named(marker))
