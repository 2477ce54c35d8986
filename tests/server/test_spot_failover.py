"""Spot interruptions and failover over loopback: manual failover, automatic failover on a
simulated interruption (outbid by a price spike, or an operator's), the workspace restored from
the last sync, a failover with nothing under max_price, and a restart of the control plane."""

from __future__ import annotations

import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dumont_plan.server.provider.market import Machine
from dumont_plan.server.provider.spot_market import OUTBID_MARGIN, outbid
from tests.server.instancefixtures import (
    FAST_ENV,
    HISTORY,
    INSTANCES,
    MARKET,
    actual,
    fast_server_fixture,
    wait_for,
    wait_until,
)
from tests.server.spotfixtures import (
    SPOT,
    deploy,
    instance_gone,
    owner_fixture,
    read_file,
    spike,
    status,
    tagged_processes,
    template_of,
    wait_status,
    write_files,
)
from tests.support import LocalServer, UserSession, new_user


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    yield from fast_server_fixture(tmp_path_factory)


@pytest.fixture
def owner(fast: LocalServer) -> Iterator[UserSession]:
    yield from owner_fixture(fast)


def running(body: dict[str, object]) -> bool:
    return body["state"] == "active" and body["instance_status"] == "running"


def test_manual_failover(fast: LocalServer, owner: UserSession) -> None:
    with owner.http() as http:
        template = template_of(fast, http, {"a.txt": "from the template"})
        deployed = deploy(http, template["template_id"], sync_interval_seconds=3600)
        old_id = deployed["instance_id"]
        wait_status(http, old_id, running)
        write_files(fast, old_id, {"b.txt": "written on the first machine"})
        response = http.post(f"{SPOT}/failover/{old_id}")
        assert response.status_code == 200, response.text
        moved = response.json()
        new_id = moved["new_instance_id"]
        assert new_id != old_id and moved["instance_id"] == new_id
        assert moved["old_instance_id"] == old_id and moved["synced_before_failover"] is True
        assert instance_gone(http, old_id)
        body = wait_status(http, new_id, running)
        # A planned move loses nothing: the old workspace was synced just before.
        assert read_file(fast, new_id, "b.txt") == "written on the first machine"
        assert read_file(fast, new_id, "a.txt") == "from the template"
        assert body["failover_count"] == 1 and body["last_failover_at"] is not None
        assert body["previous_instance_ids"] == [old_id]
        # The old id still finds the deployment, under its new instance id.
        assert status(http, old_id)["instance_id"] == new_id


def test_automatic_failover_on_a_simulated_interruption(
    fast: LocalServer, owner: UserSession
) -> None:
    with owner.http() as http:
        template = template_of(fast, http, {"a.txt": "1"})
        deployed = deploy(http, template["template_id"])
        old_id = deployed["instance_id"]
        wait_status(http, old_id, running)
        wait_until(lambda: bool(tagged_processes(old_id, fast)))
        offer_id = http.get(f"{INSTANCES}/{old_id}").json()["offer_id"]
        # The market's price for this machine jumps above the bid: outbid at the next pass.
        spike(http, offer_id, deployed["bid_price"] * 3)
        try:
            fast.reconcile()
            body = status(http, old_id)
        finally:
            spike(http, offer_id, None)
        new_id = body["instance_id"]
        assert new_id != old_id
        assert body["state"] == "active" and body["failover_count"] == 1
        lost = MARKET.by_offer(offer_id)
        assert lost is not None and body["machine_id"] != lost.machine_id
        assert body["reason"] is None
        # As on a real preemption: the processes are dead and the machine is gone.
        assert tagged_processes(old_id, fast) == []
        assert instance_gone(http, old_id)
        attempts = http.get(f"{HISTORY}/attempts", params={"hours": 1}).json()
        interrupted = [a for a in attempts if a["instance_id"] == str(old_id) and not a["success"]]
        assert [a["failure_stage"] for a in interrupted] == ["interrupted"]
        assert interrupted[0]["failure_reason"].startswith("outbid: the spot price rose to")
        recovered = wait_status(http, new_id, lambda b: b["last_recover_seconds"] is not None)
        assert 0 < recovered["last_recover_seconds"] < 30
        events = http.get(f"{SPOT}/dashboard/events").json()
    assert events["totals"]["interruptions"] == 1 and events["totals"]["failovers"] == 1
    assert events["failovers"][0]["new_instance_id"] == new_id
    assert events["failovers"][0]["time_to_recover_seconds"] == recovered["last_recover_seconds"]


def test_workspace_restored_after_an_interruption(fast: LocalServer, owner: UserSession) -> None:
    with owner.http() as http:
        template = template_of(fast, http, {"a.txt": "template"})
        # No periodic sync during the test: the explicit one below is the last.
        deployed = deploy(http, template["template_id"], sync_interval_seconds=3600)
        old_id = deployed["instance_id"]
        wait_status(http, old_id, running)
        content = "epoch 7, loss 0.031\n" * 100
        write_files(fast, old_id, {"ckpt/state.txt": content})
        before = time.time()
        synced = http.post(f"{SPOT}/sync/{old_id}")
        assert synced.status_code == 200, synced.text
        assert synced.json()["status"] == "synced" and synced.json()["size_bytes"] > len(content)
        assert status(http, old_id)["last_sync_at"] is not None
        write_files(fast, old_id, {"late.txt": "after the last sync"})
        interrupted = http.post(f"{SPOT}/interrupt/{old_id}")
        assert interrupted.status_code == 200, interrupted.text
        assert interrupted.json()["status"] == "interrupted"
        fast.reconcile()
        body = wait_status(http, old_id, running)
        new_id = body["instance_id"]
    assert new_id != old_id and body["snapshot_restored"] is True
    assert read_file(fast, new_id, "ckpt/state.txt") == content
    assert read_file(fast, new_id, "a.txt") == "template"
    # Written after the last sync: lost with the machine, as on a real preemption.
    assert read_file(fast, new_id, "late.txt") is None
    assert time.time() - before < 30


def test_the_workspace_is_synced_periodically(fast: LocalServer, owner: UserSession) -> None:
    with owner.http() as http:
        template = template_of(fast, http, {"a.txt": "template"})
        deployed = deploy(http, template["template_id"], sync_interval_seconds=0)
        instance_id = deployed["instance_id"]
        wait_status(http, instance_id, running)
        write_files(fast, instance_id, {"progress.txt": "step 1200"})
        fast.reconcile()  # interval 0: every pass syncs
        body = status(http, instance_id)
    assert body["last_sync_at"] is not None and body["seconds_since_sync"] < 30
    snapshot = next(fast.data_dir.glob(f"spot/*/deployments/{deployed['deployment_id']}.tar"))
    with tarfile.open(snapshot) as archive:
        member = archive.extractfile("progress.txt")
        assert member is not None and member.read() == b"step 1200"


def test_an_unchanged_workspace_is_not_archived_again(
    fast: LocalServer, owner: UserSession
) -> None:
    with owner.http() as http:
        template = template_of(fast, http, {"a.txt": "template"})
        deployed = deploy(http, template["template_id"], sync_interval_seconds=0)
        instance_id = deployed["instance_id"]
        wait_status(http, instance_id, running)
        snapshot = next(fast.data_dir.glob(f"spot/*/deployments/{deployed['deployment_id']}.tar"))
        # The workload's one write (its files are handed to its uid just before it starts).
        wait_until(lambda: read_file(fast, instance_id, "boot.log") == "booted\n")
        time.sleep(2.2)  # the files' times settle (a change within 2 s is archived again)
        fast.reconcile()
        archived = snapshot.stat()
        first = status(http, instance_id)["last_sync_at"]
        time.sleep(0.01)
        fast.reconcile()
        assert status(http, instance_id)["last_sync_at"] != first  # synced: already current
        assert (snapshot.stat().st_ino, snapshot.stat().st_mtime_ns) == (
            archived.st_ino,
            archived.st_mtime_ns,
        )
        write_files(fast, instance_id, {"a.txt": "changed!"})
        fast.reconcile()
    assert snapshot.stat().st_ino != archived.st_ino
    with tarfile.open(snapshot) as archive:
        member = archive.extractfile("a.txt")
        assert member is not None and member.read() == b"changed!"


def test_failover_fails_when_nothing_is_under_max_price(
    fast: LocalServer, owner: UserSession
) -> None:
    with owner.http() as http:
        template = template_of(fast, http, {"a": "1"}, region="global")
        gpu = "H100"
        offers = http.get(f"{SPOT}/pricing", params={"gpu_name": gpu}).json()["top_offers"]
        # A deploy rents one-GPU machines: the two cheapest of those.
        first, second = [o["min_bid"] for o in offers if o["num_gpus"] == 1][:2]
        assert first < second
        # Only the cheapest fits: after it is lost, nothing else is under max_price.
        deployed = deploy(
            http, template["template_id"], gpu_preference=gpu, max_price=(first + second) / 2
        )
        http.post(f"{SPOT}/interrupt/{deployed['instance_id']}")
        fast.reconcile()
        body = status(http, deployed["instance_id"])
    assert body["state"] == "failed"
    assert body["reason"].startswith(f"No spot {gpu} offers available in global for max $")


def test_interrupt_without_auto_failover_stays_interrupted(
    fast: LocalServer, owner: UserSession
) -> None:
    with owner.http() as http:
        template = template_of(fast, http, {"a": "1"})
        deployed = deploy(http, template["template_id"], auto_failover=False)
        http.post(f"{SPOT}/interrupt/{deployed['instance_id']}")
        fast.reconcile()
        body = status(http, deployed["instance_id"])
        assert (body["state"], body["failover_count"]) == ("interrupted", 0)
        again = http.post(f"{SPOT}/interrupt/{deployed['instance_id']}")
        assert again.status_code == 409
        # A manual failover brings it back.
        moved = http.post(f"{SPOT}/failover/{deployed['instance_id']}").json()
        assert status(http, moved["new_instance_id"])["state"] == "active"


def test_outbid_needs_a_rise_beyond_the_margin() -> None:
    machine: Machine = MARKET.machines[0]
    start = 1_000_000.0
    bid = machine.min_bid(start)
    assert not outbid(bid, bid)
    assert not outbid(bid, bid * (1 + OUTBID_MARGIN))
    assert outbid(bid, bid * (1 + OUTBID_MARGIN) + 0.001)
    # On the market's own curve: some later moment outbids a bid made at the curve's trough.
    times = [start + i * 60 for i in range(61)]
    trough = min(times, key=machine.min_bid)
    assert any(outbid(machine.min_bid(trough), machine.min_bid(t)) for t in times)


@pytest.mark.slow
def test_a_spot_deployment_survives_a_control_plane_restart(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data: Path = tmp_path_factory.mktemp("spot-restart")
    server = LocalServer(data, env=FAST_ENV).start()
    try:
        user = new_user(server.url)
        with user.http() as http:
            template = template_of(server, http, {"a.txt": "kept"})
            deployed = deploy(http, template["template_id"], sync_interval_seconds=0)
            instance_id = deployed["instance_id"]
            wait_status(http, instance_id, running)
            before = status(http, instance_id)
        server.stop(reap=False)
        server.start()
        with client_for(server, user) as http:
            after = status(http, instance_id)
            assert {
                k: after[k] for k in ("state", "deployment_id", "bid_price", "template_id")
            } == {k: before[k] for k in ("state", "deployment_id", "bid_price", "template_id")}
            assert [t["template_id"] for t in http.get(f"{SPOT}/templates").json()] == [
                template["template_id"]
            ]
            # Still watched after the restart: an interruption fails over.
            http.post(f"{SPOT}/interrupt/{instance_id}")
            server.reconcile()
            moved = wait_status(http, instance_id, running)
            assert moved["instance_id"] != instance_id and moved["failover_count"] == 1
            assert read_file(server, moved["instance_id"], "a.txt") == "kept"
            wait_for(http, moved["instance_id"], actual("running"))
    finally:
        server.stop()


def client_for(server: LocalServer, user: UserSession) -> httpx.Client:
    """The user's client for `server`'s current address (a restart changes its port)."""
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {user.token}"}, timeout=30
    )
