"""What the sandbox costs a job: start latency with bubblewrap against the same job unisolated.

Two single-user servers side by side (`--isolation auto` and `--isolation none`), each with its
local user; 50 jobs on each, interleaved. A job's start latency is from just before its POST to
the moment its command runs (the command prints the clock; both sides read the same clock).
"""

from __future__ import annotations

import json
import time

import httpx

from benchmarks.common import Options, Row, benchmark, local_server, percentile, scratch_dir

PASSWORD = "bench-password-1"
FINISHED = {"completed", "failed", "cancelled", "timeout"}


def login(url: str, email: str) -> httpx.Client:
    token = httpx.post(
        url + "/api/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=60
    ).json()["token"]
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def start_latency(http: httpx.Client) -> float:
    """Seconds from the POST to the command's first line."""
    before = time.time()
    job = http.post("/api/v1/jobs/", json={"command": "date +%s.%N"}).json()
    while (status := http.get(f"/api/v1/jobs/{job['id']}").json()["status"]) not in FINISHED:
        time.sleep(0.02)
    if status != "completed":
        raise RuntimeError(f"job {job['id']} ended {status}")
    logs = http.get(f"/api/v1/jobs/{job['id']}/logs").json()["logs"]
    return float(logs.split()[0]) - before


@benchmark("isolation")
def isolation_latency(opts: Options) -> list[Row]:
    runs = 10 if opts.quick else 50
    with scratch_dir(opts, "isolation") as tmp:
        creds = tmp / "local-user.json"
        email = "local@dumont.localhost"
        creds.write_text(json.dumps({"email": email, "password": PASSWORD}))
        args = ("--local-user-file", str(creds), "--isolation")
        with (
            local_server(tmp / "bwrap", *args, "auto", multi_user=False) as isolated,
            local_server(tmp / "none", *args, "none", multi_user=False) as plain,
        ):
            sides = {"bwrap": login(isolated.url, email), "none": login(plain.url, email)}
            times: dict[str, list[float]] = {name: [] for name in sides}
            for _ in range(runs):
                for name, http in sides.items():
                    times[name].append(start_latency(http))
            for http in sides.values():
                http.close()
    isolated_p50 = percentile(times["bwrap"], 50) * 1000
    plain_p50 = percentile(times["none"], 50) * 1000
    note = (
        f"p50 over {runs} jobs each, interleaved; p90 {percentile(times['bwrap'], 90) * 1000:.0f}"
        f" ms isolated, {percentile(times['none'], 90) * 1000:.0f} ms unisolated; added p50"
        f" {isolated_p50 - plain_p50:.0f} ms"
    )
    return [
        Row.ratio_row(
            "isolation: job start p50 (bwrap)",
            isolated_p50,
            plain_p50,
            "ms",
            "the same job unisolated",
            note=note,
        )
    ]
