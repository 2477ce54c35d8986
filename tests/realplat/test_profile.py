"""The real-platform profile of the local control plane reproduces the real server's ways."""

from __future__ import annotations

import uuid

from tests.server.jobfixtures import create_job
from tests.support import LocalServer, UserSession


def test_health_lists_capabilities_only_in_the_local_profile(
    profile_server: LocalServer, real_platform: bool
) -> None:
    body = profile_user_health(profile_server)
    assert body["status"] == "healthy"
    assert ("capabilities" in body) is not real_platform


def profile_user_health(server: LocalServer) -> dict[str, object]:
    import httpx

    data: dict[str, object] = httpx.get(server.url + "/health", timeout=10).json()
    return data


def test_idempotency_key_is_ignored_on_the_real_platform(
    profile_user: UserSession, real_platform: bool
) -> None:
    key = uuid.uuid4().hex
    body = {"name": "twice", "command": "true", "gpu_type": "RTX 4090"}
    with profile_user.http() as http:
        first = http.post("/api/v1/jobs/", json=body, headers={"Idempotency-Key": key})
        second = http.post("/api/v1/jobs/", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == second.status_code == 201, second.text
    same = first.json()["id"] == second.json()["id"]
    assert same is not real_platform


def test_job_list_offset_is_ignored_on_the_real_platform(
    profile_user: UserSession, real_platform: bool
) -> None:
    ids = [create_job(profile_user, name=f"j{i}", command="true")["id"] for i in range(3)]
    with profile_user.http() as http:
        first = http.get("/api/v1/jobs/", params={"limit": 2}).json()
        second = http.get("/api/v1/jobs/", params={"limit": 2, "offset": 2}).json()
    assert [j["id"] for j in first["jobs"]] == ids[::-1][:2]
    if real_platform:
        assert first["total"] == 2
        assert [j["id"] for j in second["jobs"]] == [j["id"] for j in first["jobs"]]
    else:
        assert first["total"] == 3
        assert [j["id"] for j in second["jobs"]] == ids[:1]


def test_a_500_carries_its_reason_in_details(
    profile_server: LocalServer, real_platform: bool
) -> None:
    import httpx

    answer = httpx.post(profile_server.url + "/api/v1/_local/raise", timeout=10)
    assert answer.status_code == 500
    expected = "raised on purpose by the test hook" if real_platform else "DeliberateBug"
    assert answer.json() == {"error": "Internal server error", "details": expected}
