"""Crash: SIGKILL of the control plane itself, during an apply and while jobs run.

The server is killed with SIGKILL (its detached job runners and instance processes live on)
and started again on the same data dir and port. Then `dumont apply -y` is run until it exits
0: it must converge with no duplicate, nothing lost (every ledger entry points at a live
object) and nothing running that the ledger does not know. Jobs that were running when the
server died complete, and the apply after them is a no-op. (A restart under running jobs at
the API level is `tests/server/test_jobs_restart.py`.)
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.apply.applykit import Project, live_names
from tests.support import LocalServer, UserSession, new_user

FINISHED = ("completed", "failed", "cancelled", "timeout")
MAX_RUNS = 4

SPEC = """
version: 1
project: blackout
instances:
  box: {speed_tier: fast, max_price: 2.0}
jobs:
  first: {command: "echo one", timeout_minutes: 10, wait: completed}
  second: {command: "echo after ${job.first.id}", timeout_minutes: 10}
  third: {command: "echo three", timeout_minutes: 10}
  fourth: {command: "echo on ${instance.box.id}", timeout_minutes: 10}
"""
JOBS = Counter({f"blackout-{n}": 1 for n in ("first", "second", "third", "fourth")})
INSTANCES = Counter({"blackout-box": 1})

RUNNING = """
version: 1
project: longrun
jobs:
  slow: {command: "sleep 3; echo slow done", timeout_minutes: 10, wait: completed}
  slower: {command: "sleep 4; echo slower done", timeout_minutes: 10, wait: completed}
"""


class Plane:
    """A private control plane that can be SIGKILLed and started again on its port."""

    def __init__(self, data_dir: Path) -> None:
        self.server = LocalServer(data_dir).start()
        self.port = self.server.url.rsplit(":", 1)[1]

    @property
    def url(self) -> str:
        return self.server.url

    def kill(self) -> None:
        self.server.kill()

    def restart(self) -> None:
        self.server = LocalServer(self.server.data_dir, extra_args=["--port", self.port]).start()
        assert self.server.url.endswith(":" + self.port)

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[Plane]:
    running = Plane(tmp_path / "plane")
    yield running
    running.stop()


def project(plane: Plane, root: Path, spec: str) -> tuple[Project, UserSession]:
    user = new_user(plane.url)
    home = root / "home"
    home.mkdir()
    proj = Project(root / "work", home, user.url, user.token)
    proj.write(spec)
    return proj, user


def run_until(apply: subprocess.Popen[str], event_type: str, count: int = 1) -> list[str]:
    """Read apply's NDJSON events until the `count`th of `event_type`; the lines read."""
    assert apply.stdout is not None
    lines = []
    seen = 0
    for line in apply.stdout:
        lines.append(line)
        if json.loads(line)["type"] == event_type:
            seen += 1
            if seen == count:
                return lines
    raise AssertionError(f"apply ended before {count} {event_type} events: {lines}")


def finish(apply: subprocess.Popen[str]) -> int:
    _, err = apply.communicate(timeout=120)
    assert "Traceback" not in err, err
    return apply.returncode


def converge(proj: Project) -> list[int]:
    codes = []
    for _ in range(MAX_RUNS):
        done = proj("apply", "-y", code=None, timeout=180)
        codes.append(done.returncode)
        assert done.returncode in (0, 3), (done.returncode, done.stdout, done.stderr)
        if done.returncode == 0:
            return codes
    raise AssertionError(f"apply did not converge: exit codes {codes}")


def assert_nothing_lost(proj: Project, user: UserSession) -> dict[str, Any]:
    proj("plan", "--detailed-exitcode")
    state = proj.state()
    assert state["pending"] == []
    assert live_names(user.client) == (JOBS, INSTANCES)
    jobs = {j.id: j for j in user.client.jobs.list_all()}
    instances = {str(i.id): i for i in user.client.instances.list_all()}
    for address, entry in state["resources"].items():
        assert entry["remote_id"] in (jobs if address.startswith("job.") else instances), address
    managed = {entry["remote_id"] for entry in state["resources"].values()}
    assert set(instances) <= managed
    for job in jobs.values():
        assert job.id in managed or job.status in FINISHED, job
    return state


@pytest.mark.parametrize(
    ("kill_after", "restart_while_applying"),
    [("change_start", True), ("change_done", False)],
    ids=["mid-request-restarted-at-once", "after-a-create-restarted-later"],
)
@pytest.mark.slow
def test_control_plane_killed_during_an_apply(
    plane: Plane, tmp_path: Path, kill_after: str, restart_while_applying: bool
) -> None:
    proj, user = project(plane, tmp_path, SPEC)
    apply = proj.popen("apply", "-y", "--json")
    run_until(apply, kill_after)
    plane.kill()
    if restart_while_applying:
        plane.restart()  # the dying apply's retries may reach it
        first = finish(apply)
    else:
        first = finish(apply)
        plane.restart()
    assert first in (0, 1, 3), first
    codes = converge(proj)
    print(f"killed apply exited {first}; then apply exited {codes}")
    assert_nothing_lost(proj, user)
    mutating = plane.server.mutating_requests()
    proj("apply", "-y")
    assert plane.server.mutating_requests() == mutating, (first, codes)
    proj("destroy", "-y")


@pytest.mark.slow
def test_jobs_running_across_a_control_plane_crash_complete(plane: Plane, tmp_path: Path) -> None:
    proj, user = project(plane, tmp_path, RUNNING)
    apply = proj.popen("apply", "-y", "--json")
    assert apply.stdout is not None
    ids: dict[str, str] = {}
    for line in apply.stdout:  # until both jobs are being waited for
        event = json.loads(line)
        if event["type"] == "wait_progress":
            ids[event["address"]] = event["remote_id"]
            if len(ids) == 2:
                break
    assert len(ids) == 2, ids
    plane.kill()
    time.sleep(0.5)
    plane.restart()
    code = finish(apply)
    print(f"apply across the restart exited {code}")
    # The apply's waits either bridged the restart (0) or gave up on a connection (3).
    assert code in (0, 3), code
    deadline = time.monotonic() + 30
    while any(user.client.jobs.get(i).status not in FINISHED for i in ids.values()):
        assert time.monotonic() < deadline, "jobs did not finish after the restart"
        time.sleep(0.2)
    for address, job_id in ids.items():
        job = user.client.jobs.get(job_id)
        assert job.status == "completed", (address, job)
        name = address.split(".", 1)[1]
        assert f"{name} done" in user.client.jobs.logs(job_id)["logs"]
    assert proj.state()["pending"] == []
    mutating = plane.server.mutating_requests()
    proj("apply", "-y")
    assert plane.server.mutating_requests() == mutating
    proj("plan", "--detailed-exitcode")
    assert Counter(j.name for j in user.client.jobs.list_all()) == Counter(
        {"longrun-slow": 1, "longrun-slower": 1}
    )
