"""Machine history and blacklists (§9), per user: boot outcomes recorded, automatic rules, offers
annotated and filtered, race losers not punished, manual CRUD, isolation."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import httpx
import pytest

from dumont_plan.server.provider.market import Machine
from tests.server.instancefixtures import (
    HISTORY,
    INSTANCES,
    MARKET,
    create,
    delete_all,
    fast_server_fixture,
    machine_with,
    reliable_offer,
    wait_for,
)
from tests.support import LocalServer, UserSession, assert_invisible_to, new_user

BLACKLIST = f"{HISTORY}/blacklist"


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    yield from fast_server_fixture(tmp_path_factory)


@pytest.fixture
def owner(fast: LocalServer) -> Iterator[UserSession]:
    session = new_user(fast.url)
    yield session
    with session.http() as http:
        delete_all(http)


def boot_once(http: httpx.Client, machine: Machine) -> dict[str, Any]:
    """Create on `machine`, wait for the boot's outcome, delete; return the final instance."""
    instance = create(http, machine.offer_id)
    final = wait_for(http, instance["id"], lambda b: b["actual_status"] != "loading")
    assert http.delete(f"{INSTANCES}/{instance['id']}").status_code == 200
    return final


def offer_of(http: httpx.Client, machine: Machine, **params: Any) -> dict[str, Any] | None:
    found = http.get(
        f"{INSTANCES}/offers",
        params={"gpu_name": machine.gpu_name, "limit": 100, "min_inet_up": 0, "min_disk": 0}
        | params,
    ).json()["offers"]
    return next((o for o in found if o["id"] == machine.offer_id), None)


def test_a_failed_boot_is_a_loading_failure(owner: UserSession) -> None:
    machine = machine_with([True])
    with owner.http() as http:
        instance = create(http, machine.offer_id)
        failed = wait_for(http, instance["id"], lambda b: b["actual_status"] != "loading")
        assert (failed["status"], failed["actual_status"]) == ("error", "exited")
        assert failed["status_msg"] == "boot failed: the machine did not become ready"
        assert failed["ssh_host"] is None

        attempts = http.get(f"{HISTORY}/attempts").json()
        assert len(attempts) == 1
        attempt = attempts[0]
        assert attempt["success"] is False
        assert attempt["failure_stage"] == "loading"
        assert attempt["machine_id"] == machine.machine_id
        assert attempt["offer_id"] == str(machine.offer_id)
        assert attempt["instance_id"] == str(instance["id"])
        assert attempt["gpu_name"] == machine.gpu_name
        assert attempt["time_to_ready_seconds"] is None

        summary = http.get(f"{HISTORY}/summary").json()
        assert summary == {
            "period_hours": 24,
            "provider": "all",
            "total_attempts": 1,
            "successful": 0,
            "failed": 1,
            "success_rate": 0.0,
            "failure_stages": {"loading": 1},
            "blacklisted_machines": 0,
        }
        stats = http.get(f"{HISTORY}/stats/local/{machine.machine_id}").json()
        assert stats["total_attempts"] == 1 and stats["failed_attempts"] == 1
        assert stats["success_rate"] == 0.0 and stats["reliability_status"] == "unknown"
        assert stats["is_blacklisted"] is False and stats["gpu_name"] == machine.gpu_name

        # Deleting the failed machine records nothing more.
        http.delete(f"{INSTANCES}/{instance['id']}")
        assert len(http.get(f"{HISTORY}/attempts").json()) == 1
        assert http.get(f"{HISTORY}/attempts", params={"success_only": True}).json() == []


def test_three_consecutive_failures_blacklist_the_machine_for_that_user(
    fast: LocalServer, owner: UserSession
) -> None:
    machine = machine_with([True, True, True])
    with owner.http() as http:
        for _ in range(3):
            assert boot_once(http, machine)["actual_status"] == "exited"

        entries = http.get(BLACKLIST).json()
        assert len(entries) == 1
        entry = entries[0]
        assert {k: entry[k] for k in ("provider", "machine_id", "blacklist_type", "reason")} == {
            "provider": "local",
            "machine_id": machine.machine_id,
            "blacklist_type": "auto",
            "reason": "3 consecutive failures",
        }
        assert (entry["total_attempts"], entry["failed_attempts"], entry["failure_rate"]) == (
            3,
            3,
            1.0,
        )
        assert entry["is_active"] is True and entry["gpu_name"] == machine.gpu_name
        check = http.get(f"{BLACKLIST}/check/local/{machine.machine_id}").json()
        assert check["is_blacklisted"] is True and check["info"]["id"] == entry["id"]

        # The owner's offers skip it unless asked, and then it is annotated.
        assert offer_of(http, machine) is None
        annotated = offer_of(http, machine, include_blacklisted=True)
        assert annotated is not None
        assert {k: annotated[k] for k in ("is_blacklisted", "blacklist_reason")} == {
            "is_blacklisted": True,
            "blacklist_reason": "3 consecutive failures",
        }
        assert (annotated["success_rate"], annotated["total_attempts"]) == (0.0, 3)
        assert annotated["reliability_status"] == "poor"

        problematic = http.get(f"{HISTORY}/problematic").json()
        assert [p["machine_id"] for p in problematic] == [machine.machine_id]
        assert problematic[0]["is_blacklisted"] is True
        assert http.get(f"{HISTORY}/reliable").json() == []
        view = http.get(f"{INSTANCES}/blacklist/status").json()
        assert view["blacklist"]["count"] == 1
        assert view["blacklist"]["machines"][0]["machine_id"] == int(machine.machine_id)
        assert view["blacklist"]["machines"][0]["failures"] == 3

    # Anonymous callers and other users see the machine, with neutral annotations.
    public = httpx.get(
        fast.url + f"{INSTANCES}/offers",
        params={"gpu_name": machine.gpu_name, "limit": 100, "min_inet_up": 0, "min_disk": 0},
    ).json()["offers"]
    mine = next(o for o in public if o["id"] == machine.offer_id)
    assert mine["is_blacklisted"] is False and mine["total_attempts"] == 0
    other = new_user(fast.url)
    with other.http() as http:
        theirs = offer_of(http, machine)
        assert theirs is not None and theirs["is_blacklisted"] is False
        assert http.get(BLACKLIST).json() == []
        assert http.get(f"{BLACKLIST}/check/local/{machine.machine_id}").json() == {
            "is_blacklisted": False,
            "info": None,
        }


def test_successes_annotate_offers(owner: UserSession) -> None:
    with owner.http() as http:
        offer = reliable_offer(http)
        machine = MARKET.by_offer(offer["id"])
        assert machine is not None
        assert boot_once(http, machine)["actual_status"] == "running"
        seen = offer_of(http, machine, max_price=100)
        assert seen is not None
        assert (seen["success_rate"], seen["total_attempts"]) == (1.0, 1)
        assert seen["reliability_status"] == "unknown"  # fewer than 3 attempts
        stats = http.get(f"{HISTORY}/stats/local/{machine.machine_id}").json()
        assert stats["successful_attempts"] == 1 and stats["avg_time_to_ready"] > 0


def slow_reliable_offer(http: httpx.Client) -> dict[str, Any]:
    """An offer whose machine boots in 2 s or more (at time scale 1) and never fails."""
    found = http.get(
        f"{INSTANCES}/offers", params={"limit": 100, "min_inet_up": 0, "order_by": "-dph_total"}
    ).json()["offers"]
    for offer in found:
        machine = MARKET.by_offer(offer["id"])
        if machine and machine.failure_probability == 0 and machine.boot_seconds >= 2:
            return dict(offer)
    raise AssertionError("no slow reliable offer")


@pytest.mark.parametrize(
    ("reason", "recorded"),
    [("race_loser", []), (None, []), ("boot_timeout", ["loading"])],
)
def test_deleting_a_loading_machine(
    server: LocalServer, reason: str | None, recorded: list[str]
) -> None:
    """On the session server (time scale 1) a slow machine stays loading long enough."""
    racer = new_user(server.url)
    with racer.http() as http:
        offer = slow_reliable_offer(http)
        instance = create(http, offer["id"])
        assert instance["actual_status"] == "loading"
        params = {"reason": reason} if reason else {}
        response = http.delete(f"{INSTANCES}/{instance['id']}", params=params)
        assert response.status_code == 200
        attempts = http.get(f"{HISTORY}/attempts").json()
        assert [a["failure_stage"] for a in attempts] == recorded
        if recorded:
            assert attempts[0]["failure_reason"] == "not ready in time (reported by the client)"


def test_manual_blacklist_crud(user: UserSession) -> None:
    with user.http() as http:
        added = http.post(
            BLACKLIST,
            json={
                "provider": "vast",
                "machine_id": "4242",
                "reason": "ssh never answers",
                "duration_hours": 2,
                "gpu_name": "RTX 4090",
            },
        )
        assert added.status_code == 200
        entry = added.json()
        assert {k: entry[k] for k in ("provider", "machine_id", "blacklist_type", "reason")} == {
            "provider": "vast",
            "machine_id": "4242",
            "blacklist_type": "manual",
            "reason": "ssh never answers",
        }
        assert entry["is_active"] is True and entry["expires_at"] is not None
        assert (entry["total_attempts"], entry["failed_attempts"]) == (0, 0)

        again = http.post(
            BLACKLIST, json={"provider": "vast", "machine_id": "4242", "reason": "for good"}
        ).json()
        assert again["id"] == entry["id"] and again["expires_at"] is None
        assert again["reason"] == "for good" and again["gpu_name"] == "RTX 4090"

        assert [e["id"] for e in http.get(BLACKLIST).json()] == [entry["id"]]
        assert http.get(BLACKLIST, params={"provider": "local"}).json() == []
        assert http.get(BLACKLIST, params={"blacklist_type": "auto"}).json() == []
        bad = http.get(BLACKLIST, params={"blacklist_type": "forever"})
        assert bad.status_code == 400
        assert bad.json() == {
            "error": "blacklist_type: unknown value 'forever'; use one of auto, manual, temporary"
        }
        assert http.get(f"{BLACKLIST}/check/vast/4242").json()["is_blacklisted"] is True
        assert (
            http.get(f"{HISTORY}/summary", params={"provider": "vast"}).json()[
                "blacklisted_machines"
            ]
            == 1
        )

        removed = http.delete(f"{BLACKLIST}/vast/4242")
        assert removed.json() == {"success": True, "message": "Removed vast:4242 from blacklist"}
        missing = http.delete(f"{BLACKLIST}/vast/4242")
        assert missing.status_code == 404
        assert missing.json() == {"error": "Machine not in blacklist"}
        assert http.get(f"{BLACKLIST}/check/vast/4242").json() == {
            "is_blacklisted": False,
            "info": None,
        }


@pytest.mark.parametrize(
    "body",
    [
        {"provider": "vast", "machine_id": "1"},
        {"provider": "", "machine_id": "1", "reason": "x"},
        {"provider": "vast", "machine_id": "1", "reason": "x", "duration_hours": 0},
    ],
)
def test_manual_blacklist_validation(user: UserSession, body: dict[str, Any]) -> None:
    with user.http() as http:
        response = http.post(BLACKLIST, json=body)
    assert response.status_code == 422
    assert response.json()["error"] == "Validation error"


def test_expired_entries_are_reported_inactive_not_deleted(
    fast: LocalServer, owner: UserSession
) -> None:
    with owner.http() as http:
        body = {"provider": "vast", "machine_id": "77", "reason": "x", "duration_hours": 1}
        entry = http.post(BLACKLIST, json=body).json()
        with closing(sqlite3.connect(fast.data_dir / "dumont.sqlite3")) as db, db:
            db.execute(
                "UPDATE machine_blacklist SET expires_at = ? WHERE id = ?",
                (time.time() - 60, entry["id"]),
            )
        for _ in range(2):  # a read changes nothing
            check = http.get(f"{BLACKLIST}/check/vast/77").json()
            assert check["is_blacklisted"] is False
            assert check["info"]["id"] == entry["id"] and check["info"]["is_active"] is False
        assert http.get(BLACKLIST).json() == []
        expired = http.get(BLACKLIST, params={"include_expired": True}).json()
        assert [e["id"] for e in expired] == [entry["id"]]


def test_host_blacklist_view_doubles_its_ttl(user: UserSession) -> None:
    with user.http() as http:
        first = http.post(f"{INSTANCES}/blacklist/12345", params={"reason": "bad disk"})
        assert first.json() == {
            "success": True,
            "message": "Machine 12345 blacklisted for 1 h: bad disk",
        }
        status = http.get(f"{INSTANCES}/blacklist/status").json()
        assert status["success"] is True and status["message"] == "1 hosts currently blacklisted"
        (item,) = status["blacklist"]["machines"]
        assert item["machine_id"] == 12345 and item["reason"] == "bad disk"
        assert 3500 < item["remaining_seconds"] <= 3600
        second = http.post(f"{INSTANCES}/blacklist/12345").json()
        assert second["message"] == "Machine 12345 blacklisted for 2 h: manual"
        entry = http.get(f"{BLACKLIST}/check/local/12345").json()["info"]
        assert entry["blacklist_type"] == "manual"
        assert http.delete(f"{INSTANCES}/blacklist/12345").json() == {
            "success": True,
            "message": "Machine 12345 removed from blacklist",
        }
        assert http.delete(f"{INSTANCES}/blacklist/12345").json() == {
            "success": False,
            "message": "Machine 12345 was not blacklisted",
        }
        assert http.post(f"{INSTANCES}/blacklist/abc").status_code == 422


def test_history_is_per_user(fast: LocalServer, owner: UserSession) -> None:
    machine = machine_with([True])
    with owner.http() as http:
        boot_once(http, machine)
        http.post(BLACKLIST, json={"provider": "vast", "machine_id": "9", "reason": "x"})
    other = new_user(fast.url)
    assert_invisible_to(
        other,
        [
            ("GET", f"{HISTORY}/stats/local/{machine.machine_id}"),
            ("DELETE", f"{BLACKLIST}/vast/9"),
        ],
    )
    with other.http() as http:
        assert http.get(f"{HISTORY}/summary").json()["total_attempts"] == 0
        assert http.get(f"{HISTORY}/attempts").json() == []
        assert http.get(f"{HISTORY}/problematic", params={"min_attempts": 1}).json() == []
        assert http.get(BLACKLIST, params={"include_expired": True}).json() == []
    with owner.http() as http:  # the owner's entry survived the other user's DELETE
        assert http.get(f"{BLACKLIST}/check/vast/9").json()["is_blacklisted"] is True


def test_history_reads_validate_and_need_a_token(fast: LocalServer, user: UserSession) -> None:
    with user.http() as http:
        assert http.get(f"{HISTORY}/summary", params={"hours": 0}).status_code == 422
        assert http.get(f"{HISTORY}/attempts", params={"limit": 501}).status_code == 422
        assert http.get(f"{HISTORY}/stats/vast/1").json() == {"error": "Machine stats not found"}
        summary = http.get(f"{HISTORY}/summary", params={"provider": "vast", "hours": 5}).json()
        assert (summary["provider"], summary["period_hours"]) == ("vast", 5)
    assert httpx.get(fast.url + f"{HISTORY}/summary").status_code == 401
