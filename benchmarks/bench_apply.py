"""Apply throughput: `dumont apply` creating N jobs vs the same POSTs with httpx, side by side.

N jobs that do nothing (`command: "true"`; N = 500, `--quick`: 100). Each side gets a fresh
private control plane (no test hooks) and a fresh user:

- apply: `dumont apply -y --json` with the default parallelism (8), the console script run
  as a user runs it (start-up, plan, the ledger journal written before and after each create);
- raw: the same request bodies (`resolve_body`, as apply builds them) with an Idempotency-Key
  each, POSTed to `/api/v1/jobs/` by 8 threads sharing one `httpx.Client`.

The server starts a runner process per job (about 60-70 ms of CPU each), at most 8 of a user's
jobs at once (`--max-running-jobs`): the others wait in `pending`, so a create no longer pays
for a runner (issue 10) and both sides' creates are cheap; the runners work through the queue
meanwhile, alike for both sides. Before the next side starts, every job of the previous one
must have completed, so each side has the machine to itself. The sides alternate (raw, apply,
raw, apply) and the best rate of each is kept.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import (
    Options,
    Row,
    Server,
    benchmark,
    clean_env,
    local_server,
    register_user,
    scratch_dir,
)
from benchmarks.startup import dumont_argv
from dumont_plan.apply.resolve import resolve_body
from dumont_plan.loader import load_stack
from dumont_plan.secrets import SecretStore

PROJECT = "burst"
PARALLELISM = 8  # apply's default
MIN_RATIO = 0.7


def spec_text(n: int) -> str:
    lines = ["version: 1", f"project: {PROJECT}", "jobs:"]
    for i in range(n):
        lines += [f"  j{i:04d}:", '    command: "true"', "    timeout_minutes: 10"]
    return "\n".join(lines) + "\n"


def request_bodies(folder: Path) -> list[dict[str, Any]]:
    """The create bodies apply sends for the spec in `folder`."""
    stack = load_stack([folder / "dumont.yaml"], folder)
    store = SecretStore({}, [])
    return [
        resolve_body(resource, stack.project, {}, store, "salt").body
        for resource in stack.resources.values()
    ]


def wait_all_completed(server: Server, token: str, n: int, timeout: float = 300) -> None:
    """Until the user's N jobs have all completed (their runners done)."""
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
        while True:
            total = http.get("/api/v1/jobs/", params={"limit": 1}).json()["total"]
            done = http.get("/api/v1/jobs/", params={"limit": 1, "status": "completed"}).json()
            if total == n and done["total"] == n:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{done['total']} of {total} jobs completed (expected {n})")
            time.sleep(0.5)


def raw_side(server: Server, token: str, bodies: list[dict[str, Any]]) -> float:
    """Seconds to POST every body with PARALLELISM threads; every answer must be 201."""
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    lock = threading.Lock()
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as http:

        def post(body: dict[str, Any]) -> None:
            response = http.post(
                "/api/v1/jobs/", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
            )
            if response.status_code != 201:
                with lock:
                    failures.append(f"{response.status_code} {response.text[:200]}")

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=PARALLELISM) as pool:
            list(pool.map(post, bodies))
        elapsed = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"raw POSTs failed: {failures[:3]}")
    return elapsed


def apply_side(server: Server, token: str, folder: Path, home: Path) -> tuple[float, float]:
    """Wall seconds of `dumont apply -y --json`, and its own apply phase (apply_done)."""
    env = {**clean_env(home), "DUMONT_API_URL": server.url, "DUMONT_TOKEN": token}
    start = time.perf_counter()
    done = subprocess.run(
        [*dumont_argv(), "apply", "-y", "--json"],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"apply exited {done.returncode}: {done.stderr[-1000:]}")
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    finished = [e for e in events if e["type"] == "apply_done"]
    phase = float(finished[-1]["elapsed"]) if finished else wall
    return wall, phase


def one_round(opts: Options, tmp: Path, n: int, side: str, index: int) -> tuple[float, float]:
    """One side on a fresh server: (wall seconds, the apply phase or the same wall)."""
    folder = tmp / f"{side}{index}"
    home = folder / "home"
    home.mkdir(parents=True)
    (folder / "dumont.yaml").write_text(spec_text(n), encoding="utf-8")
    with local_server(folder / "server") as server:
        token = register_user(server.url, f"{side}{index}@example.com")
        if side == "raw":
            wall = raw_side(server, token, request_bodies(folder))
            phase = wall
        else:
            wall, phase = apply_side(server, token, folder, home)
        wait_all_completed(server, token, n)
    return wall, phase


@benchmark("apply")
def apply_throughput(opts: Options) -> list[Row]:
    n = 100 if opts.quick else 500
    rounds = 1 if opts.quick else 2
    best: dict[str, tuple[float, float]] = {}
    with scratch_dir(opts, "apply") as tmp:
        for index in range(rounds):
            for side in ("raw", "apply"):
                print(f"  apply: {side} round {index + 1}", file=sys.stderr, flush=True)
                wall, phase = one_round(opts, tmp, n, side, index)
                if side not in best or wall < best[side][0]:
                    best[side] = (wall, phase)
    raw_wall = best["raw"][0]
    apply_wall, apply_phase = best["apply"]
    note = (
        f"best of {rounds}, alternating; the server runs each side's jobs through the same "
        f"per-user queue (8 runners at once); apply's own phase (after start-up and plan) "
        f"took {apply_phase:.1f} s = {n / apply_phase:.1f} jobs/s"
    )
    return [
        Row(
            f"apply: raw POST /jobs/ x{n} ({PARALLELISM} threads)",
            n / raw_wall,
            "jobs/s",
            note=f"{raw_wall:.1f} s, httpx, same bodies and Idempotency-Key",
        ),
        Row.ratio_row(
            f"apply: dumont apply creating {n} jobs",
            n / apply_wall,
            n / raw_wall,
            "jobs/s",
            "raw POSTs",
            min_ratio=MIN_RATIO,
            note=note + f"; whole command {apply_wall:.1f} s",
        ),
    ]
