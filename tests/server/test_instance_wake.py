"""`POST /instances/{id}/wake` (§3.4) over loopback: a paused instance moves to a new machine
with its disk restored from a snapshot; the old one is gone; refusals keep it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server.instancefixtures import (
    INSTANCES,
    actual,
    delete_all,
    fast_server_fixture,
    wait_for,
    workspace,
)
from tests.server.serverlessfixtures import running_instance
from tests.support import LocalServer, UserSession, new_user

# Keeps the first boot's stamp: a restored disk shows the same one after the wake.
STAMP = "test -f keep.txt || date +%s%N > keep.txt; exec sleep 600"


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    yield from fast_server_fixture(tmp_path_factory)


@pytest.fixture
def owner(fast: LocalServer) -> Iterator[UserSession]:
    session = new_user(fast.url)
    yield session
    with session.http() as http:
        delete_all(http)


def test_wake_moves_a_paused_instance_with_its_disk(fast: LocalServer, owner: UserSession) -> None:
    with owner.http() as http:
        old = running_instance(http, STAMP)
        old_view = http.get(f"{INSTANCES}/{old}").json()
        stamp = workspace(fast, old) / "keep.txt"
        wait_for(http, old, lambda _: stamp.exists())
        first = stamp.read_text()

        running = http.post(f"{INSTANCES}/{old}/wake")
        assert running.status_code == 409
        assert "not hibernated" in running.json()["error"]

        assert http.post(f"{INSTANCES}/{old}/pause").status_code == 200
        wait_for(http, old, actual("stopped"))
        too_cheap = http.post(f"{INSTANCES}/{old}/wake", json={"max_price": 0.0001})
        assert too_cheap.status_code == 409
        assert "max_price" in too_cheap.json()["error"]
        assert http.get(f"{INSTANCES}/{old}").status_code == 200  # kept

        woken = http.post(f"{INSTANCES}/{old}/wake", json={"max_price": 100})
        assert woken.status_code == 200, woken.text
        body = woken.json()
        assert body["success"] is True
        assert body["old_instance_id"] == str(old)
        assert body["snapshot_id"]
        assert body["time_taken"] >= 0
        new = int(body["new_instance_id"])
        assert new != old
        assert http.get(f"{INSTANCES}/{old}").status_code == 404
        view = wait_for(http, new, actual("running"))
        assert view["gpu_name"] == old_view["gpu_name"]
        restored = workspace(fast, new) / "keep.txt"
        assert restored.read_text() == first


def test_wake_is_per_user_and_checks_its_body(fast: LocalServer, owner: UserSession) -> None:
    with owner.http() as http:
        mine = running_instance(http)
        assert http.post(f"{INSTANCES}/{mine}/pause").status_code == 200
        assert http.post(f"{INSTANCES}/{mine}/wake", json={"max_price": -1}).status_code == 422
    other = new_user(fast.url)
    with other.http() as http:
        answer = http.post(f"{INSTANCES}/{mine}/wake")
        assert answer.status_code == 404
    with owner.http() as http:
        assert http.get(f"{INSTANCES}/{mine}").status_code == 200


def test_a_wake_leaves_no_copy_of_the_disk_behind(fast: LocalServer, owner: UserSession) -> None:
    """The disk's snapshot only carries it to the new machine: kept, each wake of an instance
    (a serverless policy wakes often) would add a copy of its workspace to the server's disk."""
    with owner.http() as http:
        old = running_instance(http, STAMP)
        wait_for(http, old, lambda _: (workspace(fast, old) / "keep.txt").exists())
        assert http.post(f"{INSTANCES}/{old}/pause").status_code == 200
        wait_for(http, old, actual("stopped"))
        woken = http.post(f"{INSTANCES}/{old}/wake", json={"max_price": 100})
        assert woken.status_code == 200, woken.text
        new = int(woken.json()["new_instance_id"])
        assert (workspace(fast, new) / "keep.txt").exists()
    left = list((fast.data_dir / "snapshots" / "wake").rglob("*.tar*"))
    assert left == [], left
