"""The serverless modes' mechanics over loopback, on real instance processes: fast keeps the
processes' memory, economic restarts them, spot gives the machine back and bids again; wakes,
savings and cost while paused; a restart of the control plane keeps policies and pauses."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.instancefixtures import (
    FAST_ENV,
    INSTANCES,
    delete_all,
    fast_server_fixture,
    wait_until,
    workspace,
)
from tests.server.serverlessfixtures import (
    COUNTER,
    SERVERLESS,
    advance,
    enable,
    free_offer_ids,
    instance,
    paused,
    running_instance,
    status,
    until_status,
)
from tests.support import LocalServer, UserSession, new_user


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    yield from fast_server_fixture(tmp_path_factory)


@pytest.fixture
def owner(fast: LocalServer) -> Iterator[UserSession]:
    session = new_user(fast.url)
    yield session
    with session.http() as http:
        delete_all(http)


def counter(server: LocalServer, instance_id: int) -> int:
    """The in-memory counter the instance's process last wrote (0: nothing yet)."""
    text = (workspace(server, instance_id) / "counter").read_text().strip() or "0"
    return int(text)


def pause_idle(http: object, instance_id: int) -> dict[str, object]:
    """Let the reconciler see the instance idle, then pass its timeout on the policy clock."""
    until_status(http, instance_id, lambda b: b["idle_since"] is not None)  # type: ignore[arg-type]
    advance(http, 30)  # type: ignore[arg-type]
    return until_status(http, instance_id, paused)  # type: ignore[arg-type]


def test_wake_a_paused_instance(owner: UserSession) -> None:
    with owner.http() as http:
        iid = running_instance(http)
        enable(http, iid, mode="economic", idle_timeout_seconds=5)
        pause_idle(http, iid)
        assert instance(http, iid)["actual_status"] == "stopped"
        response = http.post(f"{SERVERLESS}/wake/{iid}")
        assert response.status_code == 200, response.text
        woke = response.json()
        assert (woke["instance_id"], woke["status"], woke["mode"]) == (iid, "resumed", "economic")
        assert (woke["method"], woke["checkpoint_restored"]) == ("resume", False)
        assert 0 < woke["cold_start_seconds"] < 30
        assert woke["ssh_host"] == "127.0.0.1" and woke["ssh_port"] > 0
        assert instance(http, iid)["actual_status"] == "running"
        body = status(http, iid)
        assert body["is_paused"] is False and body["cold_starts"] == 1
        assert body["avg_cold_start_seconds"] == pytest.approx(woke["cold_start_seconds"], abs=1e-3)
        again = http.post(f"{SERVERLESS}/wake/{iid}").json()
        assert again == {"instance_id": iid, "status": "already_running"}


def test_fast_keeps_memory_while_economic_restarts(fast: LocalServer, owner: UserSession) -> None:
    with owner.http() as http:
        frozen = running_instance(http, COUNTER)
        stopped = running_instance(http, COUNTER)
        enable(http, frozen, mode="fast", idle_timeout_seconds=20, gpu_threshold=50)
        enable(http, stopped, mode="economic", idle_timeout_seconds=20, gpu_threshold=50)
        for iid in (frozen, stopped):
            wait_until(lambda iid=iid: counter(fast, iid) >= 20)  # type: ignore[misc]
            until_status(http, iid, lambda b: b["idle_since"] is not None)
        advance(http, 30)
        for iid in (frozen, stopped):
            until_status(http, iid, paused)
        before = {iid: counter(fast, iid) for iid in (frozen, stopped)}
        time.sleep(0.3)
        assert counter(fast, frozen) == before[frozen]  # frozen: it does not count on

        fast_wake = http.post(f"{SERVERLESS}/wake/{frozen}").json()
        assert (fast_wake["method"], fast_wake["memory_kept"]) == ("checkpoint", True)
        assert fast_wake["cold_start_seconds"] < 1
        slow_wake = http.post(f"{SERVERLESS}/wake/{stopped}").json()
        assert (slow_wake["method"], slow_wake["memory_kept"]) == ("resume", False)

        # fast continues from its count; economic's process starts again from 1.
        wait_until(lambda: counter(fast, frozen) > before[frozen])
        wait_until(lambda: (workspace(fast, stopped) / "counter").exists())
        wait_until(lambda: 0 < counter(fast, stopped) < before[stopped])


def test_spot_releases_the_machine_and_bids_again(fast: LocalServer, owner: UserSession) -> None:
    with owner.http() as http:
        iid = running_instance(http)
        offer_id = instance(http, iid)["offer_id"]
        enable(http, iid, mode="spot", idle_timeout_seconds=5)
        assert offer_id not in free_offer_ids(http)
        pause_idle(http, iid)
        # Paused in spot mode: the machine is back on the market, and another user rents it.
        assert offer_id in free_offer_ids(http)
        other = new_user(fast.url)
        with other.http() as http_b:
            taken = http_b.post(INSTANCES, json={"offer_id": offer_id})
            assert taken.status_code == 201, taken.text
            refused = http.post(f"{INSTANCES}/{iid}/resume")
            assert refused.status_code == 409 and "wake" in refused.json()["error"]

            woke = http.post(f"{SERVERLESS}/wake/{iid}")
            assert woke.status_code == 200, woke.text
            answer = woke.json()
            assert answer["offer_id"] != offer_id  # another machine, same GPU
            assert 0 < answer["bid_price"] <= status(http, iid)["max_price"]
            now = instance(http, iid)
            assert (now["actual_status"], now["use_spot"], now["offer_id"]) == (
                "running",
                True,
                answer["offer_id"],
            )
            http_b.delete(f"{INSTANCES}/{taken.json()['id']}")


def test_spot_wake_fails_with_the_reason_when_nothing_is_under_max_price(
    owner: UserSession,
) -> None:
    with owner.http() as http:
        iid = running_instance(http)
        enable(http, iid, mode="spot", idle_timeout_seconds=5, max_price=0.0001)
        pause_idle(http, iid)
        response = http.post(f"{SERVERLESS}/wake/{iid}")
        assert response.status_code == 409, response.text
        reason = response.json()["error"]
        assert "max price $0.0001/h" in reason and "cheapest bid now" in reason
        body = status(http, iid)
        assert (body["status"], body["is_paused"], body["last_wake_error"]) == (
            "wake_failed",
            True,
            reason,
        )
        assert instance(http, iid)["actual_status"] == "stopped"
        # A higher max price (enable again) lets the next wake through.
        enable(http, iid, mode="spot", idle_timeout_seconds=5, max_price=50)
        assert http.post(f"{SERVERLESS}/wake/{iid}").status_code == 200


def test_savings_grow_while_paused_and_the_cost_stops(owner: UserSession) -> None:
    with owner.http() as http:
        iid = running_instance(http)
        enable(http, iid, mode="economic", idle_timeout_seconds=5)
        running_dph = instance(http, iid)["dph_total"]
        pause_idle(http, iid)
        cost_before = instance(http, iid)["total_cost"]
        saved_before = status(http, iid)["total_savings_usd"]
        advance(http, 3600)  # an hour of the policy clock
        saved = status(http, iid)["total_savings_usd"] - saved_before
        assert saved == pytest.approx(running_dph - 0.005, rel=0.05)
        time.sleep(1.0)
        # Real time: the paused instance accrues storage only ($0.005/h: < $0.00001 in 1 s).
        assert instance(http, iid)["total_cost"] - cost_before < 1e-5
        total = http.post(f"{SERVERLESS}/wake/{iid}").json()["total_savings_usd"]
        assert total >= saved
        assert http.get(f"{SERVERLESS}/status").json()["total_savings_usd"] == pytest.approx(
            total, abs=1e-5
        )


@pytest.mark.slow
def test_restart_keeps_policies_and_paused_state(tmp_path: Path) -> None:
    server = LocalServer(tmp_path / "restart", env=FAST_ENV).start()
    try:
        user = new_user(server.url)
        with user.http() as http:
            kept = running_instance(http)
            frozen = running_instance(http, COUNTER)
            enable(http, kept, mode="economic", idle_timeout_seconds=600, gpu_threshold=9)
            enable(
                http,
                frozen,
                mode="fast",
                idle_timeout_seconds=20,
                gpu_threshold=50,
                webhook_url="http://127.0.0.1:9/hook",
                webhook_secret="restart-secret",
            )
            pause_idle(http, frozen)
        server.stop(reap=False)  # the frozen processes outlive the control plane
        server.start()
        user = dataclasses.replace(user, url=server.url)  # a new port; the token still holds
        with user.http() as http:
            body = status(http, kept)
            assert (body["mode"], body["idle_timeout_seconds"], body["gpu_threshold"]) == (
                "economic",
                600,
                9,
            )
            after = status(http, frozen)
            assert (after["is_paused"], after["paused_mode"]) == (True, "fast")
            assert after["webhook_url"] == "http://127.0.0.1:9/hook"
            assert instance(http, frozen)["actual_status"] == "stopped"
            woke = http.post(f"{SERVERLESS}/wake/{frozen}").json()
            assert (woke["status"], woke["memory_kept"]) == ("resumed", True)
    finally:
        server.stop()
    database = (tmp_path / "restart" / "dumont.sqlite3").read_bytes()
    assert b"restart-secret" not in database  # the webhook secret is sealed at rest
