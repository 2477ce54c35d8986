"""`DumontClient.serverless` against the real local control plane over loopback: read models,
the upsert, own-only lists, a wake's measured cold start, and 404s as NotFoundError."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dumont_plan.errors import NotFoundError
from dumont_plan.wire_models import ServerlessPolicy, ServerlessWake
from tests.server.instancefixtures import delete_all
from tests.server.serverlessfixtures import advance, paused, running_instance, until_status
from tests.support import LocalServer, UserSession, new_user


@pytest.fixture
def owner(server: LocalServer) -> Iterator[UserSession]:
    session = new_user(server.url)
    yield session
    with session.http() as http:
        delete_all(http)


def test_enable_status_list_upsert_and_disable(owner: UserSession, server: LocalServer) -> None:
    api = owner.client.serverless
    with owner.http() as http:
        iid = running_instance(http)
    answer = api.enable(iid, mode="economic", idle_timeout_seconds=30, gpu_threshold=7.5)
    assert (answer["status"], answer["mode"], answer["idle_timeout_seconds"]) == (
        "enabled",
        "economic",
        30,
    )
    policy = api.status(iid)
    assert isinstance(policy, ServerlessPolicy)
    assert (policy.instance_id, policy.mode, policy.idle_timeout_seconds) == (iid, "economic", 30)
    assert (policy.gpu_threshold, policy.keep_warm, policy.is_paused) == (7.5, False, False)
    assert policy.state in ("active", "idle")
    assert policy.raw["instance_id"] == iid
    assert [p.instance_id for p in api.list()] == [iid]
    # Another user sees none of it, and cannot read or change it.
    other = new_user(server.url)
    assert other.client.serverless.list() == []
    with pytest.raises(NotFoundError):
        other.client.serverless.status(iid)
    with pytest.raises(NotFoundError):
        other.client.serverless.enable(iid, mode="fast")
    # Enable is an upsert: the whole policy is replaced (unset fields take the defaults).
    api.enable(iid, mode="fast", keep_warm=True)
    again = api.status(iid)
    assert (again.mode, again.keep_warm, again.idle_timeout_seconds) == ("fast", True, 10)
    assert api.webhooks(iid) == []
    assert api.disable(iid)["status"] == "disabled"  # type: ignore[index]
    with pytest.raises(NotFoundError):
        api.status(iid)
    assert api.disable(iid, missing_ok=True) is None
    with pytest.raises(NotFoundError):
        api.disable(iid)
    assert api.list() == []


def test_wake_reports_the_measured_cold_start(owner: UserSession) -> None:
    api = owner.client.serverless
    with owner.http() as http:
        iid = running_instance(http)
        api.enable(iid, mode="fast", idle_timeout_seconds=2, gpu_threshold=50)
        until_status(http, iid, lambda body: body["idle_since"] is not None)
        advance(http, 5)
        until_status(http, iid, paused)
    assert api.status(iid).state == "paused"
    woken = api.wake(iid)
    assert isinstance(woken, ServerlessWake)
    assert (woken.status, woken.instance_id, woken.mode) == ("resumed", iid, "fast")
    assert woken.cold_start_seconds is not None and 0 <= woken.cold_start_seconds < 5
    api.inference_start(iid)  # keeps it awake (a 2 s idle timeout would pause it again)
    assert api.wake(iid).status == "already_running"
    assert api.status(iid).state != "paused"


def test_pricing_and_overview(owner: UserSession) -> None:
    api = owner.client.serverless
    with owner.http() as http:
        iid = running_instance(http)
    api.enable(iid, mode="spot")
    pricing = api.pricing()
    assert {"always_on", "serverless_fast", "serverless_economic"} <= set(pricing["monthly_costs"])
    mine = pricing["instances"]
    assert [item["instance_id"] for item in mine] == [iid]
    assert mine[0]["serverless_mode"] == "spot"
    assert set(mine[0]["modes"]) == {"fast", "economic", "spot"}
    overview = api.overview()
    assert overview["status"] == "operational" and overview["total_instances"] == 1
