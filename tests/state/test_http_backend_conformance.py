"""The `backend: http` client against a stand-alone server of Terraform's HTTP backend protocol
(tests/state/tfhttp.py, not our control plane): basic auth, custom LOCK/UNLOCK methods or
GitLab's POST/DELETE on `/lock`, 423 with the holder's info, `?ID=` on writes, retries."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from dumont_plan.client.state_http import HttpStateSettings, HttpStateStore
from dumont_plan.errors import BackendError, LockError
from dumont_plan.state.backend import RemoteBackend, lock_info
from dumont_plan.state.ledger import DesiredRecord
from tests.state.tfhttp import Backend

PATH = "/api/v4/projects/42/terraform/state/prod"
SECRET = "glpat-s3cr3t-token-value"


@pytest.fixture
def server() -> Iterator[Backend]:
    backend = Backend("ana", SECRET).start()
    yield backend
    backend.stop()


def store(server: Backend, *, gitlab: bool = False, **overrides: Any) -> HttpStateStore:
    address = server.url + PATH
    settings: dict[str, Any] = {
        "address": address,
        "username": "ana",
        "password": SECRET,
        "retry_wait_min": 0.01,
        "retry_wait_max": 0.05,
    }
    if gitlab:
        settings.update(
            lock_address=address + "/lock",
            unlock_address=address + "/lock",
            lock_method="POST",
            unlock_method="DELETE",
        )
    settings.update(overrides)
    return HttpStateStore(HttpStateSettings(**settings))


@pytest.mark.parametrize("gitlab", [False, True], ids=["LOCK/UNLOCK", "gitlab POST/DELETE"])
def test_a_locked_write_round_trips_with_basic_auth(server: Backend, gitlab: bool) -> None:
    remote = RemoteBackend(store(server, gitlab=gitlab))
    assert not remote.load("prod").exists  # 404: no state yet
    with remote.locked("prod", command="dumont apply") as ledger:
        held = server.lock
        assert held is not None and held["Operation"] == "dumont apply"
        ledger.record("job.a", kind="job", remote_id="job_1", record=DesiredRecord({"x": 1}))
    assert server.lock is None  # released
    stored = json.loads(server.state or b"")
    assert stored["resources"]["job.a"]["remote_id"] == "job_1"
    assert stored["serial"] == 1 and stored["lineage"]
    again = remote.load("prod")
    assert again.exists and again.state.resources["job.a"].remote_id == "job_1"
    lock_method = "POST" if gitlab else "LOCK"
    assert (lock_method, PATH + ("/lock" if gitlab else "")) in server.requests
    assert ("POST", PATH) in server.requests


def test_a_held_lock_stops_the_second_with_the_holders_details(server: Backend) -> None:
    first, second = RemoteBackend(store(server)), RemoteBackend(store(server))
    with first.locked("prod", command="dumont apply") as ledger:
        held = dict(server.lock or {})
        with pytest.raises(LockError) as caught, second.locked("prod", command="dumont apply"):
            pass
        text = str(caught.value)
        assert f"state is locked by {held['Who']} since {held['Created']} (dumont apply)" in text
        assert f"dumont force-unlock {held['ID']}" in text
        # force-unlock by the holder's ID; the first run's later write is then refused.
        assert second.force_unlock(held["ID"]).removed
        with (
            second.locked("prod", command="dumont state rm"),
            pytest.raises(LockError, match="not by this run"),
        ):
            ledger.record("job.a", kind="job", remote_id="job_1")
    with pytest.raises(LockError, match="needs the lock ID"):
        second.force_unlock(None)


def test_a_lock_left_by_a_killed_dumont_on_this_machine_is_taken_over(server: Backend) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    info = lock_info("dumont apply", "prod")
    here = json.loads(info["Info"])
    info["Info"] = json.dumps({**here, "pid": int(dead.stdout)})
    server.lock = info
    notices: list[str] = []
    with RemoteBackend(store(server), notice=notices.append).locked("prod", command="x"):
        assert server.lock is not None and server.lock["ID"] != info["ID"]
    assert notices and "no longer running" in notices[0]
    # A lock held from another machine (or a live process) is never taken over.
    server.lock = {**info, "Info": json.dumps({**here, "host": "elsewhere"})}
    with pytest.raises(LockError):
        RemoteBackend(store(server)).locked("prod", command="x").__enter__()
    server.lock = {**info, "Info": json.dumps({**here, "pid": os.getpid()})}
    with pytest.raises(LockError):
        RemoteBackend(store(server)).locked("prod", command="x").__enter__()
    assert socket.gethostname() in info["Who"]


def test_retries_with_backoff_then_a_clear_error(server: Backend) -> None:
    server.fail_next = 2  # retry_max 2: the third attempt answers
    assert store(server).get() is None
    server.fail_next = 3
    with pytest.raises(BackendError, match="answered 503"):
        store(server).get()
    server.fail_next = 0
    closed = store(server, address="http://127.0.0.1:9" + PATH, retry_max=1)
    with pytest.raises(BackendError, match="did not answer"):
        closed.get()


def test_wrong_credentials_are_a_clear_error_that_shows_no_secret(server: Backend) -> None:
    with pytest.raises(BackendError) as caught:
        store(server, password="wrong-" + SECRET).get()
    assert "refused the credentials (401)" in str(caught.value)
    assert SECRET not in str(caught.value)
    shown = store(server, address=server.url.replace("//", f"//ana:{SECRET}@") + PATH + "?t=x")
    assert SECRET not in shown.address and "?t" not in shown.address
