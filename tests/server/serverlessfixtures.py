"""Helpers of the serverless tests: instances with real processes, policies, the policy clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.server.instancefixtures import INSTANCES, MARKET, actual, wait_for

SERVERLESS = "/api/v1/serverless"
SLEEPER = "exec sleep 600"
BUSY = "while :; do :; done"
# Counts in bash's memory (no file read back): the file only shows the current value.
COUNTER = "i=0; while :; do i=$((i+1)); echo $i > counter; sleep 0.05; done"


def duty_cycle(percent: int) -> str:
    """A command using at most `percent` % of one core: in each 100 ms period it spins for
    `percent` ms of CPU time, then sleeps out the period. A loaded machine makes its spin take
    longer (fewer periods a second) but never makes it use more; a share well under the fair
    share of a loaded core (2 cores, load 10: about 20 %) is what it gets."""
    script = (
        "import time\n"
        "while True:\n"
        "    start = time.monotonic(); cpu = time.process_time()\n"
        f"    while time.process_time() - cpu < {percent / 1000}: pass\n"
        "    time.sleep(max(0.0, 0.1 - (time.monotonic() - start)))\n"
    )
    return f"exec python3 -c '{script}'"


def free_offer_ids(http: httpx.Client, gpu_name: str | None = None) -> list[int]:
    params: dict[str, Any] = {"limit": 100, "min_inet_up": 0, "min_inet_down": 0}
    if gpu_name:
        params["gpu_name"] = gpu_name
    offers = http.get(f"{INSTANCES}/offers", params=params).json()["offers"]
    return [
        o["id"]
        for o in offers
        if (m := MARKET.by_offer(o["id"])) is not None
        and m.failure_probability == 0
        and m.num_gpus == 1
    ]


def running_instance(http: httpx.Client, command: str | None = SLEEPER, **body: Any) -> int:
    """A running instance of a reliable one-GPU offer, its `onstart_cmd` started."""
    for offer_id in free_offer_ids(http, body.pop("gpu_name", None)):
        response = http.post(
            INSTANCES,
            json={"offer_id": offer_id, **({"onstart_cmd": command} if command else {}), **body},
        )
        if response.status_code == 201:
            instance_id = int(response.json()["id"])
            wait_for(http, instance_id, actual("running"))
            return instance_id
    raise AssertionError("no free reliable offer")


def enable(http: httpx.Client, instance_id: int, **body: Any) -> dict[str, Any]:
    response = http.post(f"{SERVERLESS}/enable/{instance_id}", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def status(http: httpx.Client, instance_id: int) -> dict[str, Any]:
    response = http.get(f"{SERVERLESS}/status/{instance_id}")
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def reconcile(http: httpx.Client) -> None:
    assert http.post("/api/v1/_local/reconcile").status_code == 200


def advance(http: httpx.Client, seconds: float) -> None:
    """Move the server's policy clock forward, then run one reconciler pass."""
    response = http.post("/api/v1/_local/clock", json={"advance_seconds": seconds})
    assert response.status_code == 200, response.text
    reconcile(http)


def until_status(
    http: httpx.Client,
    instance_id: int,
    check: Callable[[dict[str, Any]], bool],
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Drive reconciler passes until the policy's status satisfies `check`."""
    deadline = time.monotonic() + timeout
    while True:
        reconcile(http)
        body = status(http, instance_id)
        if check(body):
            return body
        assert time.monotonic() < deadline, f"serverless status stuck: {body}"
        time.sleep(0.1)


def sampled(body: dict[str, Any]) -> bool:
    """The reconciler has measured the instance (its first CPU sample has an interval)."""
    return body["util_source"] is not None


def paused(body: dict[str, Any]) -> bool:
    return bool(body["is_paused"])


def instance(http: httpx.Client, instance_id: int) -> dict[str, Any]:
    response = http.get(f"{INSTANCES}/{instance_id}")
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer
