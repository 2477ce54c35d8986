"""Spot failover: time to recover after an interruption, and the work lost with it.

One server (real boot times, reconciler every 0.5 s), one spot deployment whose workspace is
synced every SYNC_SECONDS. Twenty times: wait a seeded random moment (0 to 2 sync intervals)
after the deployment runs, interrupt it (`POST /spot/interrupt/{id}`, what the market does when
it outbids), and wait for the new instance to run.

- time to recover: what the control plane records (`time_to_recover_seconds`): from the
  interruption to the reconciler pass that sees the new instance running. Its floor is the
  boot time of the new machines (the simulated market's `boot_seconds`), which no failover
  avoids; the rest is the failover itself (one pass to notice, renting, restoring the
  snapshot) and the pass that sees the boot end. The client's view (interrupt request to
  `instance_status` running on a poll every 50 ms) is given for information.
- work lost: seconds between the last sync and the interruption (`work_lost_seconds`): at most
  one sync interval plus one reconciler pass by design.
"""

from __future__ import annotations

import random
import time
from typing import Any

import httpx

from benchmarks.common import (
    Options,
    Row,
    benchmark,
    local_server,
    percentile,
    poll_json,
    register_user,
    scratch_dir,
)
from dumont_plan.server.provider.market import get_market

SYNC_SECONDS = 2.0
RECONCILE_SECONDS = 0.5  # ServerSettings.reconcile_interval
SPOT = "/api/v1/spot"


def _deployment(http: httpx.Client) -> int:
    """A running spot deployment of a template of a running instance; its instance id."""
    offers = http.get(
        "/api/v1/instances/offers", params={"limit": 1, "min_reliability": 0.95}
    ).json()["offers"]
    created = http.post(
        "/api/v1/instances", json={"offer_id": offers[0]["id"], "onstart_cmd": "exec sleep 3600"}
    ).json()
    poll_json(http, f"/api/v1/instances/{created['id']}", lambda b: b["actual_status"] == "running")
    template = http.post(f"{SPOT}/template/{created['id']}", json={}).json()
    deployed = http.post(
        f"{SPOT}/deploy",
        json={
            "template_id": template["template_id"],
            "max_price": 10,
            "sync_interval_seconds": SYNC_SECONDS,
        },
    ).json()
    return int(deployed["instance_id"])


def _interrupt_rounds(
    http: httpx.Client,
    current: int,
    rounds: int,
    rng: random.Random,
    observed: list[float],
    boots: list[float],
) -> dict[str, Any]:
    """Interrupt the deployment `rounds` times; the dashboard's events afterwards."""
    market = get_market()
    for _ in range(rounds):
        poll_json(
            http,
            f"{SPOT}/status/{current}",
            lambda b: b["instance_status"] == "running" and b["last_sync_at"] is not None,
        )
        time.sleep(rng.uniform(0, 2 * SYNC_SECONDS))
        start = time.monotonic()
        answer = http.post(f"{SPOT}/interrupt/{current}")
        if answer.status_code != 200:
            raise RuntimeError(f"interrupt: {answer.text}")
        old = current
        body = poll_json(
            http,
            f"{SPOT}/status/{old}",
            lambda b, old=old: b["instance_id"] != old and b["instance_status"] == "running",
        )
        observed.append(time.monotonic() - start)
        current = int(body["instance_id"])
        offer = http.get(f"/api/v1/instances/{current}").json()["offer_id"]
        machine = market.by_offer(int(offer))
        boots.append(machine.boot_seconds if machine else 0.0)
        poll_json(http, f"{SPOT}/status/{current}", lambda b: b["last_recover_seconds"])
    events: dict[str, Any] = http.get(f"{SPOT}/dashboard/events").json()
    return events


def _delete_everything(http: httpx.Client) -> None:
    """Delete the deployment and the template's instance: instance processes are detached
    from the server and would outlive it."""
    for deployment in http.get(f"{SPOT}/instances").json():
        http.delete(f"{SPOT}/instance/{deployment['instance_id']}")
    for instance in http.get("/api/v1/instances").json()["instances"]:
        http.delete(f"/api/v1/instances/{instance['id']}")


@benchmark("spot")
def spot_recovery(opts: Options) -> list[Row]:
    rounds = 5 if opts.quick else 20
    rng = random.Random(13)
    observed: list[float] = []
    boots: list[float] = []
    with scratch_dir(opts, "spot") as tmp, local_server(tmp / "server") as server:
        token = register_user(server.url, "spot-bench@example.com")
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
            try:
                current = _deployment(http)
                events = _interrupt_rounds(http, current, rounds, rng, observed, boots)
            finally:
                _delete_everything(http)
    recovered = [f["time_to_recover_seconds"] for f in events["failovers"] if f["succeeded"]]
    lost = [e["work_lost_seconds"] for e in events["interruptions"]]
    if len(recovered) != rounds or len(lost) != rounds or None in recovered:
        raise RuntimeError(f"expected {rounds} recovered failovers: {events['totals']}")
    bound = SYNC_SECONDS + RECONCILE_SECONDS
    p50, p95 = percentile(recovered, 50), percentile(recovered, 95)
    lost50, lost95 = percentile(lost, 50), percentile(lost, 95)
    note = (
        f"{rounds} interruptions, each at a seeded random moment; recorded by the control plane "
        f"(interruption -> the pass that sees the new instance running); client's view p50 "
        f"{percentile(observed, 50):.2f} s, p95 {percentile(observed, 95):.2f} s"
    )
    return [
        Row.ratio_row(
            "spot: time to recover p50",
            p50,
            percentile(boots, 50),
            "s",
            "boot of the new machine",
            note=note,
        ),
        Row(
            "spot: time to recover p95",
            p95,
            "s",
            target="<= 10 s",
            ok=p95 <= 10,
            note=f"max {max(recovered):.2f} s; boots p95 {percentile(boots, 95):.2f} s",
        ),
        Row(
            "spot: work lost p50",
            lost50,
            "s",
            note=f"sync every {SYNC_SECONDS:g} s; interruptions 0-{2 * SYNC_SECONDS:g} s in",
        ),
        Row(
            "spot: work lost p95",
            lost95,
            "s",
            target=f"<= {bound:g} s",
            ok=lost95 <= bound,
            note="the sync interval plus one reconciler pass bounds it",
        ),
    ]
