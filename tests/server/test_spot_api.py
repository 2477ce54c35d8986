"""Spot mode over loopback (the sprint's spot list, contract §8): templates, deploy, status,
list, pricing, stop/delete, per-user isolation and bad input. Failover: test_spot_failover.py."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator

import pytest

from tests.server.instancefixtures import INSTANCES, MARKET, fast_server_fixture
from tests.server.spotfixtures import (
    SPOT,
    deploy,
    instance_gone,
    owner_fixture,
    read_file,
    running_instance,
    status,
    template_of,
)
from tests.support import LocalServer, UserSession, assert_invisible_to, new_user

STATUS_KEYS = {
    # contract §8.1 SpotStatus
    "instance_id", "state", "template_id", "region", "bid_price", "max_price", "auto_failover",
    "failover_count", "last_failover_at", "ssh_host", "ssh_port",
}  # fmt: skip


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    yield from fast_server_fixture(tmp_path_factory)


@pytest.fixture
def owner(fast: LocalServer) -> Iterator[UserSession]:
    yield from owner_fixture(fast)


def test_template_from_an_existing_instance(fast: LocalServer, owner: UserSession) -> None:
    with owner.http() as http:
        instance = running_instance(fast, http, {"data/model.txt": "weights v1\n"})
        response = http.post(f"{SPOT}/template/{instance['id']}", json={})
        assert response.status_code == 200, response.text
        template = response.json()
    assert template["template_id"].startswith(f"spot_tpl_{instance['id']}_")
    assert template["region"] == instance["region"]
    assert template["gpu_name"] == instance["gpu_name"]
    snapshot = fast.data_dir / template["snapshot_path"]
    assert template["size_bytes"] == snapshot.stat().st_size > 0
    with tarfile.open(snapshot) as archive:
        member = archive.extractfile("data/model.txt")
        assert member is not None and member.read() == b"weights v1\n"


def test_template_of_a_subfolder_and_an_explicit_region(
    fast: LocalServer, owner: UserSession
) -> None:
    with owner.http() as http:
        instance = running_instance(fast, http, {"keep/a.txt": "a", "skip/b.txt": "b"})
        response = http.post(
            f"{SPOT}/template/{instance['id']}",
            json={"region": "EU", "workspace_path": "/workspace/keep"},
        )
        assert response.status_code == 200, response.text
    template = response.json()
    assert (template["region"], template["workspace_path"]) == ("EU", "/workspace/keep")
    with tarfile.open(fast.data_dir / template["snapshot_path"]) as archive:
        assert archive.getnames() == ["a.txt"]


def test_list_templates(fast: LocalServer, owner: UserSession) -> None:
    with owner.http() as http:
        first = template_of(fast, http, {"a.txt": "1"})
        second = template_of(fast, http, {"b.txt": "2"})
        listed = http.get(f"{SPOT}/templates")
    assert listed.status_code == 200
    assert [t["template_id"] for t in listed.json()] == [
        first["template_id"],
        second["template_id"],
    ]
    keys = {"template_id", "instance_id", "region", "gpu_name", "created_at", "workspace_path"}
    assert keys | {"size_bytes", "snapshot_path"} <= set(listed.json()[0])


def test_delete_template_removes_its_snapshot(fast: LocalServer, owner: UserSession) -> None:
    with owner.http() as http:
        template = template_of(fast, http, {"a.txt": "1"})
        snapshot = fast.data_dir / template["snapshot_path"]
        assert snapshot.is_file()
        response = http.delete(f"{SPOT}/template/{template['template_id']}")
        assert response.json() == {
            "status": "deleted",
            "template_id": template["template_id"],
            "snapshot_deleted": True,
        }
        assert not snapshot.exists()
        assert http.get(f"{SPOT}/templates").json() == []
        again = http.delete(f"{SPOT}/template/{template['template_id']}")
    assert again.status_code == 404
    assert "not found" in again.json()["error"]


def test_deploy_from_a_template(fast: LocalServer, owner: UserSession) -> None:
    with owner.http() as http:
        template = template_of(fast, http, {"notes/todo.md": "- train\n"})
        deployed = deploy(http, template["template_id"], max_price=1.0)
        instance = http.get(f"{INSTANCES}/{deployed['instance_id']}").json()
    machine = MARKET.by_offer(instance["offer_id"])
    assert machine is not None
    # Bid at the offer's minimum bid (at deploy time), within max_price, in the template region.
    assert 0 < deployed["bid_price"] <= 1.0
    assert deployed["bid_price"] == pytest.approx(instance["dph_total"], rel=0.01)
    assert instance["use_spot"] is True
    assert machine.region == template["region"]
    assert instance["label"] == f"spot_{template['template_id']}"
    assert deployed["snapshot_restored"] is True
    # It answers once the machine has booted, with its ssh address (contract §8.3).
    assert deployed["instance_status"] == "running" and deployed["ssh_host"] == "127.0.0.1"
    assert deployed["ssh_port"] == instance["ssh_port"]
    assert read_file(fast, deployed["instance_id"], "notes/todo.md") == "- train\n"
    expected = {"instance_id", "gpu_name", "bid_price", "ssh_host", "ssh_port", "region"}
    assert expected | {"template_id", "snapshot_restored"} <= set(deployed)


def test_snapshot_restored_is_false_when_there_was_nothing_to_restore(
    fast: LocalServer, owner: UserSession
) -> None:
    with owner.http() as http:
        template = template_of(fast, http, {"a.txt": "1"})
        (fast.data_dir / template["snapshot_path"]).unlink()
        deployed = deploy(http, template["template_id"])
    assert deployed["snapshot_restored"] is False
    assert read_file(fast, deployed["instance_id"], "a.txt") is None


def test_deploy_honours_the_gpu_preference(fast: LocalServer, owner: UserSession) -> None:
    with owner.http() as http:
        template = template_of(fast, http, {"a": "1"}, region="global")
        deployed = deploy(http, template["template_id"], gpu_preference="rtx 3090", max_price=5)
    assert deployed["gpu_name"] == "RTX 3090"


def test_deploy_with_no_offer_under_max_price_is_refused(
    fast: LocalServer, owner: UserSession
) -> None:
    with owner.http() as http:
        template = template_of(fast, http, {"a": "1"})
        response = http.post(
            f"{SPOT}/deploy",
            json={
                "template_id": template["template_id"],
                "max_price": 0.01,
                "gpu_preference": "H100",
            },
        )
    assert response.status_code == 400
    assert response.json()["error"].startswith("No spot H100 offers available in ")


def test_status(fast: LocalServer, owner: UserSession) -> None:
    with owner.http() as http:
        template = template_of(fast, http, {"a": "1"})
        deployed = deploy(http, template["template_id"], max_price=2.5, auto_failover=False)
        body = status(http, deployed["instance_id"])
    assert set(body) >= STATUS_KEYS
    assert body["instance_id"] == deployed["instance_id"]
    assert body["state"] == "active"
    assert body["template_id"] == template["template_id"]
    assert (body["max_price"], body["auto_failover"]) == (2.5, False)
    assert (body["failover_count"], body["last_failover_at"]) == (0, None)
    assert body["bid_price"] == deployed["bid_price"]
    assert body["deployment_id"] == deployed["deployment_id"]


def test_list(fast: LocalServer, owner: UserSession) -> None:
    with owner.http() as http:
        template = template_of(fast, http, {"a": "1"})
        one = deploy(http, template["template_id"])
        two = deploy(http, template["template_id"])
        listed = http.get(f"{SPOT}/instances").json()
    assert [s["instance_id"] for s in listed] == [one["instance_id"], two["instance_id"]]
    assert all(set(s) >= STATUS_KEYS for s in listed)


def test_pricing_by_region_and_gpu(owner: UserSession) -> None:
    with owner.http() as http:
        body = http.get(f"{SPOT}/pricing", params={"region": "EU", "gpu_name": "RTX 4090"}).json()
        everywhere = http.get(f"{SPOT}/pricing").json()
        nowhere = http.get(f"{SPOT}/pricing", params={"region": "Atlantis"}).json()
    assert body["region"] == "EU" and body["gpu_name"] == "RTX 4090"
    assert body["offers_count"] > 0 and body["top_offers"]
    for offer in body["top_offers"]:
        machine = MARKET.by_offer(offer["offer_id"])
        assert machine is not None and machine.gpu_name == "RTX 4090" and machine.region == "EU"
    bids = [o["min_bid"] for o in body["top_offers"]]
    assert bids == sorted(bids) and body["cheapest_price"] == bids[0]
    assert body["cheapest_price"] <= body["average_price"] < body["estimated_ondemand"]
    assert 0 < body["savings_vs_ondemand"] < 100
    assert everywhere["offers_count"] > body["offers_count"]
    assert len(everywhere["top_offers"]) == 10
    assert nowhere["offers_count"] == 0 and nowhere["message"] == "No spot offers available"


def test_dashboard_data_of_a_deployment(fast: LocalServer, owner: UserSession) -> None:
    with owner.http() as http:
        template = template_of(fast, http, {"a": "1"})
        deployed = deploy(http, template["template_id"])
        spend = http.get(f"{SPOT}/dashboard/spend").json()
        prices = http.get(f"{SPOT}/dashboard/prices", params={"hours": 2, "points": 13}).json()
        one = http.get(f"{SPOT}/dashboard/prices", params={"gpu_name": "rtx 4090"}).json()
        events = http.get(f"{SPOT}/dashboard/events", params={"hours": 1}).json()
        bad = http.get(f"{SPOT}/dashboard/events", params={"hours": 0})
    assert spend["instances"] == 1 and len(spend["series"]) == 1
    assert 0 <= spend["spot_cost"] <= spend["on_demand_cost"]
    # The GPU of the user's deployment, 13 samples over 2 hours, oldest first.
    assert prices["gpus"] == [deployed["gpu_name"]]
    samples = prices["series"][deployed["gpu_name"]]
    assert len(samples) == 13 and samples[-1]["t"] - samples[0]["t"] == pytest.approx(7200)
    for sample in samples:
        assert 0 < sample["cheapest_spot"] <= sample["average_spot"] < sample["average_ondemand"]
    assert one["gpus"] == ["RTX 4090"]
    assert len(events["interruptions_over_time"]) == 24 and events["totals"]["interruptions"] == 0
    assert bad.status_code == 422


def test_comparison_is_the_contracts(owner: UserSession) -> None:
    with owner.http() as http:
        body = http.get(f"{SPOT}/comparison").json()
    costs = body["monthly_costs"]
    assert costs["on_demand"]["cost_usd"] == 216.0
    assert (costs["economic"]["cost_usd"], costs["economic"]["savings_percent"]) == (39.0, 81.9)
    assert (costs["spot"]["cost_usd"], costs["spot"]["savings_percent"]) == (15.0, 93.1)
    assert body["recommendation"] == "spot"


def test_stop_and_delete(fast: LocalServer, owner: UserSession) -> None:
    with owner.http() as http:
        template = template_of(fast, http, {"a": "1"})
        deployed = deploy(http, template["template_id"])
        instance_id = deployed["instance_id"]
        stopped = http.post(f"{SPOT}/stop/{instance_id}").json()
        assert stopped == {"status": "stopped", "instance_id": instance_id}
        body = status(http, instance_id)
        assert (body["state"], body["auto_failover"]) == ("stopped", False)
        removed = http.delete(f"{SPOT}/instance/{instance_id}").json()
        assert removed == {
            "status": "removed",
            "instance_id": instance_id,
            "instance_destroyed": True,
        }
        assert http.get(f"{SPOT}/status/{instance_id}").status_code == 404
        assert instance_gone(http, instance_id)
    assert not list(fast.data_dir.glob(f"spot/*/deployments/{deployed['deployment_id']}.tar"))


def test_spot_objects_are_invisible_to_other_users(fast: LocalServer, owner: UserSession) -> None:
    with owner.http() as http:
        template = template_of(fast, http, {"secret.txt": "mine"})
        deployed = deploy(http, template["template_id"])
        source = template["instance_id"]
    other = new_user(fast.url)
    instance_id = deployed["instance_id"]
    assert_invisible_to(
        other,
        [
            ("GET", f"{SPOT}/status/{instance_id}"),
            ("POST", f"{SPOT}/failover/{instance_id}"),
            ("POST", f"{SPOT}/interrupt/{instance_id}"),
            ("POST", f"{SPOT}/sync/{instance_id}"),
            ("POST", f"{SPOT}/stop/{instance_id}"),
            ("DELETE", f"{SPOT}/instance/{instance_id}"),
            ("DELETE", f"{SPOT}/template/{template['template_id']}"),
            ("POST", f"{SPOT}/template/{source}"),
        ],
    )
    with other.http() as http:
        assert http.get(f"{SPOT}/templates").json() == []
        assert http.get(f"{SPOT}/instances").json() == []
        refused = http.post(f"{SPOT}/deploy", json={"template_id": template["template_id"]})
        assert refused.status_code == 404
        events = http.get(f"{SPOT}/dashboard/events").json()
        assert events["totals"]["interruptions"] == 0
        assert http.get(f"{SPOT}/dashboard/spend").json()["instances"] == 0
    with owner.http() as http:
        assert status(http, instance_id)["state"] == "active"
        assert len(http.get(f"{SPOT}/templates").json()) == 1


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/deploy", {}),
        ("/deploy", {"template_id": "t", "max_price": 0}),
        ("/deploy", {"template_id": "t", "max_price": 10.5}),
        ("/deploy", {"template_id": "t", "max_price": "cheap"}),
        ("/deploy", {"template_id": "t", "gpu_preference": "GTX 9999"}),
        ("/deploy", {"template_id": "t", "sync_interval_seconds": -1}),
        ("/deploy", {"template_id": "t", "auto_failover": "maybe"}),
        ("/template/30000000", {"workspace_path": "/etc"}),
        ("/template/30000000", {"workspace_path": "/workspace/../etc"}),
        ("/template/not-a-number", {}),
    ],
)
def test_bad_input_is_a_422(owner: UserSession, path: str, body: dict[str, object]) -> None:
    with owner.http() as http:
        response = http.post(SPOT + path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "Validation error"
    assert response.json()["details"]


def test_unknown_ids_are_404(owner: UserSession) -> None:
    with owner.http() as http:
        for method, path in [
            ("GET", "/status/1"),
            ("POST", "/failover/1"),
            ("POST", "/stop/1"),
            ("DELETE", "/instance/1"),
            ("DELETE", "/template/spot_tpl_1_1"),
            ("POST", "/template/1"),
            ("GET", f"/status/{2**63}"),
        ]:
            response = http.request(method, SPOT + path)
            assert response.status_code == 404, (method, path, response.text)
            assert set(response.json()) == {"error"}
