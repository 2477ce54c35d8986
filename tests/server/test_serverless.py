"""Serverless policies over loopback (contract §7.1, §7.2, §7.4): enable in each mode, disable,
list (own only), pricing per mode, bad input, the aliases, the agent heartbeat, inference
calls. Idle detection and pauses: test_serverless_idle.py; the modes' mechanics, savings,
webhooks and restarts: test_serverless_modes.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server.instancefixtures import INSTANCES, delete_all, fast_server_fixture
from tests.server.serverlessfixtures import (
    SERVERLESS,
    advance,
    enable,
    instance,
    paused,
    reconcile,
    running_instance,
    status,
    until_status,
)
from tests.support import LocalServer, UserSession, assert_invisible_to, new_user

STATUS_KEYS = {
    "instance_id", "mode", "is_paused", "idle_timeout_seconds", "current_gpu_util",
    "idle_since", "will_pause_at", "total_savings_usd", "avg_cold_start_seconds",
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


def test_enable_economic(owner: UserSession) -> None:
    with owner.http() as http:
        iid = running_instance(http)
        answer = enable(http, iid, mode="economic", idle_timeout_seconds=30, gpu_threshold=7.5)
        assert answer["configured"] is True and answer["status"] == "enabled"
        assert (answer["instance_id"], answer["mode"]) == (iid, "economic")
        assert answer["checkpoint_enabled"] is False
        assert answer["behavior"] == {
            "will_pause_after": "30s of idle",
            "idle_threshold": "GPU < 7.5%",
            "recovery_time": "~30s",
        }
        body = status(http, iid)
        assert set(body) >= STATUS_KEYS
        assert (body["mode"], body["is_paused"], body["idle_timeout_seconds"]) == (
            "economic",
            False,
            30,
        )
        assert body["gpu_threshold"] == 7.5 and body["keep_warm"] is False
        assert body["total_savings_usd"] == 0


def test_enable_with_no_body_takes_the_contract_defaults(owner: UserSession) -> None:
    with owner.http() as http:
        iid = running_instance(http)
        response = http.post(f"{SERVERLESS}/enable/{iid}")
        assert response.status_code == 200, response.text
        body = status(http, iid)
        assert (body["mode"], body["idle_timeout_seconds"], body["gpu_threshold"]) == (
            "spot",
            10,
            5.0,
        )
        assert body["keep_warm"] is False


def test_enable_spot(owner: UserSession) -> None:
    with owner.http() as http:
        iid = running_instance(http)
        answer = enable(http, iid, mode="spot", idle_timeout_seconds=60)
        assert (answer["mode"], answer["behavior"]["recovery_time"]) == ("spot", "~30s")
        # The most a wake bids: by default the machine's on-demand price now.
        assert answer["max_price"] == pytest.approx(instance(http, iid)["dph_total"], rel=0.02)
        assert status(http, iid)["mode"] == "spot"


def test_enable_fast(owner: UserSession) -> None:
    with owner.http() as http:
        iid = running_instance(http)
        answer = enable(http, iid, mode="fast", idle_timeout_seconds=2, keep_warm=True)
        assert answer["checkpoint_enabled"] is True
        assert answer["behavior"]["recovery_time"] == "<1s"
        assert answer["keep_warm"] is True
        # Enable is an upsert: a second call replaces the whole policy.
        enable(http, iid, mode="economic", idle_timeout_seconds=40)
        body = status(http, iid)
        assert (body["mode"], body["idle_timeout_seconds"], body["keep_warm"]) == (
            "economic",
            40,
            False,
        )


def test_enable_needs_an_own_live_instance(owner: UserSession, fast: LocalServer) -> None:
    with owner.http() as http:
        assert http.post(f"{SERVERLESS}/enable/123").status_code == 404
        iid = running_instance(http)
        other = new_user(fast.url)
        with other.http() as http_b:
            response = http_b.post(f"{SERVERLESS}/enable/{iid}", json={"mode": "fast"})
            assert response.status_code == 404, response.text
        assert http.get(f"{SERVERLESS}/status/{iid}").status_code == 404  # nothing made
        http.delete(f"{INSTANCES}/{iid}")
        assert http.post(f"{SERVERLESS}/enable/{iid}").status_code == 404


def test_disable(owner: UserSession) -> None:
    with owner.http() as http:
        iid = running_instance(http)
        enable(http, iid, mode="economic", idle_timeout_seconds=2)
        until_status(http, iid, lambda b: b["idle_since"] is not None)
        advance(http, 5)
        until_status(http, iid, paused)
        assert instance(http, iid)["actual_status"] == "stopped"

        response = http.post(f"{SERVERLESS}/disable/{iid}")
        assert response.status_code == 200, response.text
        answer = response.json()
        assert (answer["instance_id"], answer["status"], answer["resumed"]) == (
            iid,
            "disabled",
            True,
        )
        # Resumed first: the instance runs again, and no policy pauses it any more.
        assert instance(http, iid)["actual_status"] == "running"
        missing = http.get(f"{SERVERLESS}/status/{iid}")
        assert missing.status_code == 404
        assert missing.json() == {"error": f"Instance {iid} not configured for serverless"}
        advance(http, 60)
        assert instance(http, iid)["actual_status"] == "running"
        assert http.post(f"{SERVERLESS}/disable/{iid}").status_code == 404


def test_list_shows_own_policies_only(owner: UserSession, fast: LocalServer) -> None:
    with owner.http() as http:
        iid = running_instance(http)
        enable(http, iid, mode="fast", webhook_url="http://127.0.0.1:9/hook-of-a")
        listed = http.get(f"{SERVERLESS}/list").json()
        assert listed["count"] == 1
        (entry,) = listed["instances"]
        assert (entry["instance_id"], entry["mode"], entry["is_paused"]) == (iid, "fast", False)
        assert {"idle_timeout_seconds", "current_gpu_util", "will_pause_at"} <= set(entry)
        assert {"total_savings_usd", "last_checkpoint_id"} <= set(entry)

    other = new_user(fast.url)
    with other.http() as http_b:
        listed_b = http_b.get(f"{SERVERLESS}/list")
        assert listed_b.json() == {"count": 0, "instances": []}
        counts = http_b.get(f"{SERVERLESS}/status").json()
        assert (counts["total_instances"], counts["total_savings_usd"]) == (0, 0)
    assert_invisible_to(
        other,
        [
            ("GET", f"{SERVERLESS}/status/{iid}"),
            ("POST", f"{SERVERLESS}/wake/{iid}"),
            ("POST", f"{SERVERLESS}/disable/{iid}"),
            ("POST", f"{SERVERLESS}/inference-start/{iid}"),
            ("POST", f"{SERVERLESS}/inference-complete/{iid}"),
            ("GET", f"{SERVERLESS}/webhooks/{iid}"),
            ("POST", f"{INSTANCES}/{iid}/serverless/enable"),
            ("POST", f"{INSTANCES}/{iid}/serverless/disable"),
        ],
    )
    with owner.http() as http:
        assert status(http, iid)["mode"] == "fast"  # B changed nothing


def test_public_status_and_pricing_without_a_token(fast: LocalServer, owner: UserSession) -> None:
    import httpx

    with httpx.Client(base_url=fast.url, timeout=30) as anonymous:
        summary = anonymous.get(f"{SERVERLESS}/status").json()
        assert summary["status"] == "operational"
        assert summary["total_instances"] == 0  # nobody's counts without a token
        assert [m["mode"] for m in summary["available_modes"]] == ["spot", "economic", "fast"]
        assert len(summary["features"]) == 4
        pricing = anonymous.get(f"{SERVERLESS}/pricing").json()
    assert pricing["assumptions"] == {
        "gpu_hourly_rate_usd": 0.3,
        "active_hours_per_day": 4,
        "idle_hours_per_day": 20,
        "days_per_month": 30,
    }
    costs = pricing["monthly_costs"]
    assert costs["always_on"] == {"cost_usd": 216.0}
    assert {k: costs["serverless_fast"][k] for k in ("cost_usd", "savings_usd")} == {
        "cost_usd": 42.0,
        "savings_usd": 174.0,
    }
    assert costs["serverless_fast"]["savings_percent"] == 80.6
    assert costs["serverless_economic"]["cost_usd"] == 39.0
    assert costs["serverless_economic"]["savings_percent"] == 81.9
    assert pricing["recommendation"] == "economic"
    assert "instances" not in pricing


def test_pricing_per_mode(owner: UserSession) -> None:
    with owner.http() as http:
        iid = running_instance(http)
        enable(http, iid, mode="spot")
        pricing = http.get(f"{SERVERLESS}/pricing").json()
        running = instance(http, iid)["dph_total"]
    assert pricing["modes"]["fast"]["idle_dph"] == 0.01
    assert pricing["modes"]["economic"]["idle_dph"] == pricing["modes"]["spot"]["idle_dph"]
    (mine,) = pricing["instances"]
    assert (mine["instance_id"], mine["serverless_mode"]) == (iid, "spot")
    assert mine["running_dph"] == pytest.approx(running, rel=0.02)
    modes = mine["modes"]
    assert set(modes) == {"fast", "economic", "spot"}
    # fast and economic run at the instance's price; spot at the market's spot bid, lower.
    assert modes["fast"]["running_dph"] == modes["economic"]["running_dph"]
    assert modes["spot"]["running_dph"] < modes["economic"]["running_dph"]
    # A month of 4 h active and 20 h paused a day at each mode's rates.
    for mode in modes.values():
        expected = (mode["running_dph"] * 4 + mode["idle_dph"] * 20) * 30
        assert mode["cost_usd"] == pytest.approx(expected, abs=0.01)
    assert modes["spot"]["cost_usd"] < modes["economic"]["cost_usd"] < modes["fast"]["cost_usd"]
    assert modes["economic"]["savings_usd"] == pytest.approx(
        mine["always_on_monthly_usd"] - modes["economic"]["cost_usd"], abs=0.02
    )


@pytest.mark.parametrize(
    "body",
    [
        {"mode": "turbo"},
        {"idle_timeout_seconds": 1},
        {"idle_timeout_seconds": 3601},
        {"idle_timeout_seconds": "soon"},
        {"gpu_threshold": -1},
        {"gpu_threshold": 100.5},
        {"keep_warm": "maybe"},
        {"max_price": 0},
        {"webhook_url": "ftp://example.com/hook"},
        {"webhook_url": "not a url"},
        {"webhook_secret": "long-enough-secret"},
        {"webhook_url": "http://127.0.0.1:9/h", "webhook_secret": "short"},
    ],
)
def test_bad_input_is_422(owner: UserSession, body: dict[str, object]) -> None:
    with owner.http() as http:
        iid = running_instance(http, command=None)
        response = http.post(f"{SERVERLESS}/enable/{iid}", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "Validation error"
        assert "long-enough-secret" not in response.text
        assert http.get(f"{SERVERLESS}/status/{iid}").status_code == 404


def test_bad_input_is_422_on_the_alias_and_the_heartbeat(owner: UserSession) -> None:
    with owner.http() as http:
        iid = running_instance(http, command=None)
        for body in ({"idle_timeout_seconds": 1}, {"mode": "x"}, {"idle_threshold": 0}):
            response = http.post(f"{INSTANCES}/{iid}/serverless/enable", json=body)
            assert response.status_code == 422, (body, response.text)
        for body in (
            {"instance_id": "vast_abc"},
            {"instance_id": iid, "gpu_utilization": 140},
            {"instance_id": iid, "gpu_metrics": {"utilization": [10, -5]}},
            {"gpu_utilization": 3},
        ):
            response = http.post("/api/v1/agent/status", json=body)
            assert response.status_code == 422, (body, response.text)
        assert http.post(f"{SERVERLESS}/wake/{2**70}").status_code == 404  # as /instances


def test_instances_aliases(owner: UserSession) -> None:
    with owner.http() as http:
        iid = running_instance(http)
        # Not configured yet: the alias's disable still answers 200.
        answer = http.post(f"{INSTANCES}/{iid}/serverless/disable").json()
        assert answer["status"] == "not_found"
        enabled = http.post(f"{INSTANCES}/{iid}/serverless/enable", json={})
        assert enabled.status_code == 200, enabled.text
        assert enabled.json()["mode"] == "economic" and "behavior" not in enabled.json()
        http.post(
            f"{INSTANCES}/{iid}/serverless/enable",
            json={"cpu_standby": True, "idle_timeout_seconds": 0, "idle_threshold": 45},
        )
        body = status(http, iid)
        assert (body["mode"], body["idle_timeout_seconds"]) == ("fast", 45)
        disabled = http.post(f"{INSTANCES}/{iid}/serverless/disable").json()
        assert disabled["status"] == "disabled"


def test_agent_heartbeat_of_own_instances_only(owner: UserSession, fast: LocalServer) -> None:
    with owner.http() as http:
        iid = running_instance(http)
        enable(http, iid, mode="economic", gpu_threshold=50)
        beat = http.post(
            "/api/v1/agent/status",
            json={
                "version": "1.0",
                "instance_id": f"vast_{iid}",
                "status": "running",
                "timestamp": 1700000000,
                "gpu_metrics": {"utilization": [20, 85], "memory_used": 100},
            },
        )
        assert beat.status_code == 200, beat.text
        assert beat.json()["gpu_utilization"] == 85 and beat.json()["serverless"] is True
        body = until_status(http, iid, lambda b: b["util_source"] == "agent")
        assert body["current_gpu_util"] == 85 and body["idle_since"] is None
    other = new_user(fast.url)
    with other.http() as http_b:
        response = http_b.post("/api/v1/agent/status", json={"instance_id": iid})
        assert response.status_code == 404


def test_keep_warm_never_pauses(owner: UserSession) -> None:
    with owner.http() as http:
        iid = running_instance(http, command=None)
        enable(http, iid, mode="economic", idle_timeout_seconds=2, keep_warm=True)
        body = until_status(http, iid, lambda b: b["idle_since"] is not None)
        assert body["will_pause_at"] is None
        advance(http, 3600)
        reconcile(http)
        assert status(http, iid)["is_paused"] is False
        assert instance(http, iid)["actual_status"] == "running"


def test_inference_calls_hold_the_idle_timer_and_wake(owner: UserSession) -> None:
    with owner.http() as http:
        iid = running_instance(http, command=None)
        enable(http, iid, mode="economic", idle_timeout_seconds=10)
        started = http.post(f"{SERVERLESS}/inference-start/{iid}")
        assert started.json() == {"status": "ok", "idle_timer": "reset"}
        advance(http, 60)  # a request in flight: busy however long it takes
        body = status(http, iid)
        assert (body["is_paused"], body["util_source"], body["idle_since"]) == (
            False,
            "inference",
            None,
        )
        done = http.post(f"{SERVERLESS}/inference-complete/{iid}")
        assert done.json() == {"status": "ok", "idle_timer": "started"}
        assert status(http, iid)["idle_since"] is not None
        advance(http, 11)
        until_status(http, iid, paused)
        # inference-start on a paused instance wakes it first.
        woke = http.post(f"{SERVERLESS}/inference-start/{iid}")
        assert woke.status_code == 200, woke.text
        assert woke.json()["woken"]["status"] == "resumed"
        assert instance(http, iid)["actual_status"] == "running"
        assert status(http, iid)["is_paused"] is False
