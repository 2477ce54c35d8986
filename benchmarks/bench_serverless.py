"""Serverless: cold start per mode, and one reconciler pass over 100 enabled instances.

One server at real speed (boots take the market's `boot_seconds`, a resume half of it), test
hooks on. For each mode, one instance running `sleep` is paused and woken WAKES times: the
policy clock is advanced past its idle timeout (`POST /_local/clock`, no sleeping), and
`POST /serverless/wake/{id}` answers once the instance runs again; its `cold_start_seconds` is
what the control plane measured from the wake request to running. fast thaws frozen processes
(target: p95 < 1 s); economic boots again (its floor: the machine's resume boot, which no wake
avoids); spot also bids for a machine first, then boots (same floor, the new machine's).

The reconciler pass: INSTANCES running instances (each a sandbox with a `sleep`), every one
with a serverless policy; a pass is `POST /_local/reconcile` (jobs, instances' usage sampling,
serverless, spot, ...) timed by the client; the slowest of the passes (0.25 s apart, so some
include the usage sampler's /proc scan) is held to the target. Its baseline is the same passes
over the same instances with no policy: the difference is what serverless adds.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from benchmarks.common import (
    Options,
    Row,
    benchmark,
    local_server,
    median,
    percentile,
    poll_json,
    register_user,
    scratch_dir,
)
from dumont_plan.server.provider.market import get_market

SERVERLESS = "/api/v1/serverless"
INSTANCES_PATH = "/api/v1/instances"


def _instances(http: httpx.Client, count: int, command: str | None) -> list[int]:
    """`count` running instances on reliable one-GPU offers (created at once, then awaited)."""
    made: list[int] = []
    for machine in get_market().machines:
        if len(made) == count:
            break
        if machine.failure_probability or machine.num_gpus != 1:
            continue
        body: dict[str, Any] = {"offer_id": machine.offer_id, "disk_size": 10}
        if command:
            body["onstart_cmd"] = command
        response = http.post(INSTANCES_PATH, json=body)
        if response.status_code == 201:
            made.append(int(response.json()["id"]))
    if len(made) < count:
        raise RuntimeError(f"only {len(made)} instances could be rented")
    for iid in made:
        poll_json(http, f"{INSTANCES_PATH}/{iid}", lambda b: b["actual_status"] == "running")
    return made


def _reconcile(http: httpx.Client) -> float:
    start = time.perf_counter()
    if http.post("/api/v1/_local/reconcile").status_code != 200:
        raise RuntimeError("the reconcile hook failed")
    return time.perf_counter() - start


def _passes(http: httpx.Client, count: int) -> list[float]:
    found = []
    for _ in range(count):
        found.append(_reconcile(http))
        time.sleep(0.25)
    return found


def _pause(http: httpx.Client, iid: int) -> None:
    """Past the idle timeout on the policy clock; wait for the pause."""
    poll_json(http, f"{SERVERLESS}/status/{iid}", lambda b: b["idle_since"] is not None)
    http.post("/api/v1/_local/clock", json={"advance_seconds": 10})
    _reconcile(http)
    poll_json(http, f"{SERVERLESS}/status/{iid}", lambda b: b["is_paused"])


def _cold_starts(http: httpx.Client, mode: str, wakes: int) -> tuple[list[float], list[float]]:
    """Server-measured cold starts of `wakes` wakes, and each wake's resume-boot floor (ms)."""
    (iid,) = _instances(http, 1, "exec sleep 3600")
    enable = {"mode": mode, "idle_timeout_seconds": 2, "max_price": 10}
    if http.post(f"{SERVERLESS}/enable/{iid}", json=enable).status_code != 200:
        raise RuntimeError(f"enable {mode} failed")
    market = get_market()
    colds: list[float] = []
    floors: list[float] = []
    for _ in range(wakes):
        _pause(http, iid)
        answer = http.post(f"{SERVERLESS}/wake/{iid}")
        if answer.status_code != 200:
            raise RuntimeError(f"{mode} wake: {answer.text}")
        colds.append(float(answer.json()["cold_start_seconds"]) * 1000)
        offer = http.get(f"{INSTANCES_PATH}/{iid}").json()["offer_id"]
        machine = market.by_offer(int(offer))
        floors.append(machine.boot_seconds * 500 if machine else 0.0)  # half a boot, in ms
    http.delete(f"{INSTANCES_PATH}/{iid}")
    return colds, floors


def _sampled(http: httpx.Client) -> int:
    listed = http.get(f"{SERVERLESS}/list").json()["instances"]
    return sum(1 for i in listed if i["idle_since"] is not None)


@benchmark("serverless")
def serverless(opts: Options) -> list[Row]:
    wakes = 5 if opts.quick else 20
    count = 20 if opts.quick else 100
    passes = 5 if opts.quick else 10
    rows: list[Row] = []
    with (
        scratch_dir(opts, "serverless") as tmp,
        local_server(tmp / "server", "--test-hooks", "--max-instances", str(count + 8)) as server,
    ):
        token = register_user(server.url, "serverless-bench@example.com")
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=120) as http:
            for mode in ("fast", "economic", "spot"):
                colds, floors = _cold_starts(http, mode, wakes)
                p50, p95 = percentile(colds, 50), percentile(colds, 95)
                note = f"{wakes} wakes; max {max(colds):.0f} ms"
                if mode == "fast":
                    rows.append(Row(f"serverless: {mode} cold start p50", p50, "ms", note=note))
                    rows.append(
                        Row(
                            f"serverless: {mode} cold start p95",
                            p95,
                            "ms",
                            target="< 1000 ms",
                            ok=p95 < 1000,
                            note="SIGCONT of the frozen processes (memory kept)",
                        )
                    )
                    continue
                floor = percentile(floors, 50)
                rows.append(
                    Row.ratio_row(
                        f"serverless: {mode} cold start p50",
                        p50,
                        floor,
                        "ms",
                        "resume boot of the machine",
                        note=note,
                    )
                )
                rows.append(Row(f"serverless: {mode} cold start p95", p95, "ms"))

            ids = _instances(http, count, "exec sleep 3600")
            _reconcile(http)
            baseline_passes = _passes(http, passes)
            for iid in ids:  # idle, but a long timeout: the passes sample, nothing pauses
                body = {"mode": "economic", "idle_timeout_seconds": 3600}
                if http.post(f"{SERVERLESS}/enable/{iid}", json=body).status_code != 200:
                    raise RuntimeError("enable failed")
            deadline = time.monotonic() + 60
            while _sampled(http) < count:  # steady state: every instance measured once
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {_sampled(http)} of {count} policies sampled")
                _reconcile(http)
                time.sleep(0.2)
            measured_passes = _passes(http, passes)
            for iid in ids:
                http.delete(f"{INSTANCES_PATH}/{iid}")
    measured, baseline = max(measured_passes), max(baseline_passes)
    rows.append(
        Row(
            f"serverless: reconciler pass, {count} enabled instances (slowest)",
            measured * 1000,
            "ms",
            baseline=baseline * 1000,
            baseline_label="the same passes, no policy",
            ratio=measured / baseline if baseline else None,
            target="< 1000 ms",
            ok=measured < 1.0,
            note=f"slowest of {passes} passes 0.25 s apart (POST /_local/reconcile, client-timed: "
            "the whole pass; the slowest include the /proc scan of the usage sampler, at most one "
            f"a second); median {median(measured_passes) * 1000:.1f} ms, without policies "
            f"{median(baseline_passes) * 1000:.1f} ms",
        )
    )
    return rows
