"""`/api/v1/state/{project}`: Terraform's HTTP backend protocol on the local control plane.

GET (404 = none), POST with `?ID=`, LOCK/UNLOCK as custom methods with the holder's lock info
on 423/409; serial and lineage guard every write; per user; listed in /health.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.support import LocalServer, UserSession, assert_invisible_to, new_user

STATE = "/api/v1/state"


def doc(serial: int, lineage: str = "L1", **extra: Any) -> str:
    return json.dumps({"format_version": 1, "serial": serial, "lineage": lineage, **extra})


def lock_info(lock_id: str, who: str = "ana@laptop") -> dict[str, Any]:
    return {
        "ID": lock_id,
        "Operation": "dumont apply",
        "Info": "",
        "Who": who,
        "Version": "0",
        "Created": "2026-01-01T00:00:00Z",
        "Path": "demo",
    }


def test_get_of_nothing_is_404_and_a_post_is_read_back(user: UserSession) -> None:
    with user.http() as http:
        assert http.get(f"{STATE}/demo").status_code == 404
        assert http.post(f"{STATE}/demo", content=doc(1)).status_code == 200
        got = http.get(f"{STATE}/demo")
        assert got.status_code == 200
        assert got.text == doc(1)
        assert got.headers["content-type"].startswith("application/json")


def test_lock_conflict_answers_423_with_the_holders_info(user: UserSession) -> None:
    with user.http() as http:
        first = http.request("LOCK", f"{STATE}/p", json=lock_info("A"))
        assert first.status_code == 200
        again = http.request("LOCK", f"{STATE}/p", json=lock_info("A"))  # a retried LOCK
        assert again.status_code == 200
        second = http.request("LOCK", f"{STATE}/p", json=lock_info("B", who="bo@ci"))
        assert second.status_code == 423
        assert second.json()["ID"] == "A"
        assert second.json()["Who"] == "ana@laptop"
        # A write under another lock ID, or none, is refused with the holder's info.
        wrong = http.post(f"{STATE}/p", params={"ID": "B"}, content=doc(1))
        assert wrong.status_code == 409
        assert wrong.json()["ID"] == "A"
        assert http.post(f"{STATE}/p", content=doc(1)).status_code == 409
        assert http.post(f"{STATE}/p", params={"ID": "A"}, content=doc(1)).status_code == 200
        # UNLOCK with another ID: 409 and the holder; with the holder's: released.
        refused = http.request("UNLOCK", f"{STATE}/p", json=lock_info("B"))
        assert refused.status_code == 409
        assert refused.json()["ID"] == "A"
        assert http.request("UNLOCK", f"{STATE}/p", params={"ID": "A"}).status_code == 200
        assert http.request("LOCK", f"{STATE}/p", json=lock_info("B")).status_code == 200
        # A write naming a lock no longer held (force-unlocked since) is refused.
        assert http.request("UNLOCK", f"{STATE}/p", json=lock_info("B")).status_code == 200
        stale = http.post(f"{STATE}/p", params={"ID": "B"}, content=doc(2))
        assert stale.status_code == 409
        assert "not held" in stale.json()["error"]


def test_stale_serial_and_other_lineage_are_refused(user: UserSession) -> None:
    with user.http() as http:
        assert http.post(f"{STATE}/s", content=doc(5)).status_code == 200
        assert http.post(f"{STATE}/s", content=doc(5)).status_code == 200  # same: a retry
        stale = http.post(f"{STATE}/s", content=doc(4, note="old"))
        assert stale.status_code == 409
        assert "stale serial 4" in stale.json()["error"]
        same = http.post(f"{STATE}/s", content=doc(5, note="different"))
        assert same.status_code == 409
        other = http.post(f"{STATE}/s", content=doc(9, lineage="L2"))
        assert other.status_code == 409
        assert "lineage" in other.json()["error"]
        assert http.post(f"{STATE}/s", content=doc(6)).status_code == 200
        assert json.loads(http.get(f"{STATE}/s").text)["serial"] == 6


def test_bad_input_is_a_422_envelope(user: UserSession) -> None:
    with user.http() as http:
        for response in (
            http.post(f"{STATE}/p2", content="[1, 2]"),
            http.post(f"{STATE}/p2", content="not json"),
            http.request("LOCK", f"{STATE}/p2", json={"Who": "x"}),
            http.get(f"{STATE}/{'x' * 101}"),
        ):
            assert response.status_code == 422, response.text
            assert response.json()["error"] == "Validation error"


def test_states_are_per_user(user: UserSession, server: LocalServer) -> None:
    with user.http() as http:
        assert http.post(f"{STATE}/mine", content=doc(1)).status_code == 200
        assert http.request("LOCK", f"{STATE}/mine", json=lock_info("A")).status_code == 200
    other = new_user(server.url)
    assert_invisible_to(other, [("GET", f"{STATE}/mine")])
    with other.http() as http:  # another user's project of the same name is their own
        assert http.request("LOCK", f"{STATE}/mine", json=lock_info("Z")).status_code == 200
        assert (
            http.post(f"{STATE}/mine", params={"ID": "Z"}, content=doc(1, "X")).status_code == 200
        )
    with user.http() as http:
        assert json.loads(http.get(f"{STATE}/mine").text)["lineage"] == "L1"


def test_unauthenticated_is_401_and_health_lists_the_capability(server: LocalServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get(f"{STATE}/demo").status_code == 401
        assert http.request("LOCK", f"{STATE}/demo", json=lock_info("A")).status_code == 401
        assert "state.http-backend" in http.get("/health").json()["capabilities"]


def test_a_large_state_is_accepted_past_the_request_body_limit(user: UserSession) -> None:
    big = doc(1, resources={f"job.j{i}": {"kind": "job", "pad": "x" * 400} for i in range(4000)})
    assert len(big) > 1024 * 1024
    with user.http() as http:
        assert http.post(f"{STATE}/big", content=big).status_code == 200
        assert http.get(f"{STATE}/big").text == big
