"""Faults: apply against a control plane that fails at a set rate converges, with no duplicate
and no orphan.

A private server started with `--fault-rate 0.2` answers a fifth of the API requests with a
seeded fault: 503/429 with Retry-After, 500, a 0.2 s delay, or a *drop* (the request is carried
out but its answer is lost: 502). `dumont apply -y` is run until it exits 0 (a create is never
retried, so a run may end 3, or 1 when a read fails); then, faults off, the plan is empty and
the server lists exactly one object per address, each the one the ledger names.

A drop on a create is the case that matters (the object exists, the client never heard of it):
random faults may not hit one, so two tests queue a drop for the first `POST /api/v1/jobs/`
and for a create of the instance race, and check that the re-run adopts the job by name (its
Idempotency-Key kept in the journal) and that no raced machine is left behind.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from dumont_plan.server.app import create_app
from dumont_plan.server.settings import ServerSettings
from tests.apply.applykit import Project, live_names
from tests.support import LocalServer, UserSession, new_user

FAULT_RATE = 0.2
MAX_RUNS = 6
FINISHED = ("completed", "failed", "cancelled", "timeout")

SPEC = """
version: 1
project: faulty
instances:
  box: {speed_tier: fast, max_price: 2.0}
jobs:
  prep: {command: "echo prep", timeout_minutes: 10, wait: completed}
  a: {command: "echo a ${job.prep.id}", timeout_minutes: 10}
  b: {command: "echo b", timeout_minutes: 10, run_policy: on_change}
  c: {command: "sleep 60", timeout_minutes: 10}
  d: {command: "echo on ${instance.box.id}", timeout_minutes: 10}
"""
JOBS = Counter({f"faulty-{n}": 1 for n in ("prep", "a", "b", "c", "d")})
INSTANCES = Counter({"faulty-box": 1})
# Then: b runs again (its command changed), c is deleted (cancelled), e is new.
CHANGED = """
version: 1
project: faulty
instances:
  box: {speed_tier: fast, max_price: 2.0, state: paused}
jobs:
  prep: {command: "echo prep", timeout_minutes: 10, wait: completed}
  a: {command: "echo a ${job.prep.id}", timeout_minutes: 10}
  b: {command: "echo b again", timeout_minutes: 10, run_policy: on_change}
  d: {command: "echo on ${instance.box.id}", timeout_minutes: 10}
  e: {command: "echo e", timeout_minutes: 10}
"""
CHANGED_JOBS = JOBS + Counter({"faulty-b": 1, "faulty-e": 1})


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    server = LocalServer(
        tmp_path_factory.mktemp("faulty-plane"), extra_args=["--fault-rate", str(FAULT_RATE)]
    ).start()
    set_rate(server, 0)  # each test turns the faults on when it wants them
    yield server
    server.stop()


def set_rate(server: LocalServer, rate: float) -> None:
    response = httpx.put(server.url + "/api/v1/_local/faults/rate", json={"rate": rate})
    assert response.status_code == 200, response.text


def queue_drop(server: LocalServer, method: str, path: str) -> None:
    body = {"count": 1, "status": 0, "method": method, "path": path}
    response = httpx.post(server.url + "/api/v1/_local/faults", json=body)
    assert response.status_code == 200, response.text


def project(server: LocalServer, root: Path) -> tuple[Project, UserSession]:
    user = new_user(server.url)
    home = root / "home"
    home.mkdir()
    proj = Project(root / "work", home, user.url, user.token)
    proj.write(SPEC)
    return proj, user


def apply_until_converged(proj: Project) -> list[int]:
    """`apply -y` until it exits 0; the exit codes of the runs (never a traceback)."""
    codes = []
    for _ in range(MAX_RUNS):
        done = proj("apply", "-y", code=None, timeout=180)
        codes.append(done.returncode)
        assert done.returncode in (0, 1, 3), (done.returncode, done.stdout, done.stderr)
        if done.returncode == 0:
            return codes
    raise AssertionError(f"apply did not converge in {MAX_RUNS} runs: exit codes {codes}")


def assert_exactly_the_spec(
    proj: Project, user: UserSession, jobs: Counter[str] = JOBS
) -> dict[str, Any]:
    """No changes; the live objects are the spec's (one instance, the jobs by name, old runs
    included); each address's object is live and nothing active is unknown to the ledger."""
    proj("plan", "--detailed-exitcode")
    state = proj.state()
    assert state["pending"] == []
    assert live_names(user.client) == (jobs, INSTANCES)
    managed = {entry["remote_id"] for entry in state["resources"].values()}
    live_jobs = {j.id: j for j in user.client.jobs.list_all()}
    live_instances = {str(i.id) for i in user.client.instances.list_all()}
    assert managed <= set(live_jobs) | live_instances, "a ledger entry points at nothing"
    assert live_instances <= managed, "an instance the ledger does not name"
    for job in live_jobs.values():
        assert job.id in managed or job.status in FINISHED, job
    return state


def wait_jobs_finished(user: UserSession, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while any(j.status not in FINISHED for j in user.client.jobs.list_all()):
        assert time.monotonic() < deadline, "jobs still running"
        time.sleep(0.2)


@pytest.mark.slow
def test_apply_converges_under_random_faults(plane: LocalServer, tmp_path: Path) -> None:
    proj, user = project(plane, tmp_path)
    before = plane.stats()["faults_injected"]
    set_rate(plane, FAULT_RATE)
    try:
        first = apply_until_converged(proj)
        proj.write(CHANGED)
        second = apply_until_converged(proj)
    finally:
        set_rate(plane, 0)
    assert plane.stats()["faults_injected"] > before, "no fault was injected"
    state = assert_exactly_the_spec(proj, user, CHANGED_JOBS)
    assert "job.c" not in state["resources"]
    box = user.client.instances.get(state["resources"]["instance.box"]["remote_id"])
    assert box.status == "stopped", box  # paused (the API says stopped)
    wait_jobs_finished(user)
    # Without faults, a second apply changes nothing.
    mutating = plane.mutating_requests()
    proj("apply", "-y")
    assert plane.mutating_requests() == mutating, (first, second)
    print(f"apply exit codes under faults: {first} then {second}")
    proj("destroy", "-y")  # frees the machine for the other tests


@pytest.mark.slow
def test_a_dropped_job_create_is_adopted_not_duplicated(plane: LocalServer, tmp_path: Path) -> None:
    proj, user = project(plane, tmp_path)
    queue_drop(plane, "POST", "/api/v1/jobs/")
    first = proj("apply", "-y", code=3, timeout=180)
    assert "502" in first.stdout + first.stderr
    pending = proj.state()["pending"]
    assert [op["action"] for op in pending] == ["create"], pending
    dropped = pending[0]
    assert dropped["idempotency_key"]
    # The dropped create did happen: the job is on the server, under its name, unknown to
    # the ledger. The next plan adopts it instead of creating a second one.
    names = Counter(str(j.name) for j in user.client.jobs.list_all())
    assert names[dropped["remote_name"]] == 1
    replan = proj("plan").stdout
    assert f"<= adopt {dropped['address']}" in replan, replan
    proj("apply", "-y", timeout=180)
    assert_exactly_the_spec(proj, user)
    proj("destroy", "-y")


@pytest.mark.slow
def test_a_dropped_create_in_the_instance_race_leaves_no_machine(
    plane: LocalServer, tmp_path: Path
) -> None:
    proj, user = project(plane, tmp_path)
    queue_drop(plane, "POST", "/api/v1/instances")
    apply_until_converged(proj)
    assert_exactly_the_spec(proj, user)
    proj("destroy", "-y")
    leftovers: list[Any] = user.client.instances.list_all()
    assert leftovers == []


def test_the_fault_routes_are_test_hooks(tmp_path: Path) -> None:
    """A server without test hooks has no fault routes (the catch-all answers)."""
    app = create_app(ServerSettings(data_dir=tmp_path), background=False)
    with TestClient(app) as http:
        rate = http.put("/api/v1/_local/faults/rate", json={"rate": 0.5})
        queue = http.post("/api/v1/_local/faults", json={"status": 0})
    assert (rate.status_code, queue.status_code) == (405, 405)
    assert rate.json() == {"error": "Method Not Allowed"}


def test_fault_requests_are_validated(plane: LocalServer) -> None:
    bad = httpx.post(plane.url + "/api/v1/_local/faults", json={"status": 200})
    assert bad.status_code == 422
    assert "0 for a dropped answer" in bad.text
    assert httpx.put(plane.url + "/api/v1/_local/faults/rate", json={"rate": 2}).status_code == 422
    # A targeted fault waits for its request: others pass untouched.
    queue_drop(plane, "POST", "/api/v1/nowhere")
    user = new_user(plane.url)
    assert user.client.jobs.list().raw == {"jobs": [], "total": 0}
    httpx.delete(plane.url + "/api/v1/_local/faults")
