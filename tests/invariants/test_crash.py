"""Invariant 2: an apply killed at any point, then run again, converges: no duplicate, no orphan.

Two ways to kill it, against a private control plane:
- `DUMONT_TEST_CRASH_AFTER=N`: the process dies (exit 137, like SIGKILL) right after its Nth
  ledger write, for every N of a fresh apply (creates, a reference, a wizard race) and of an
  apply that changes things (a job re-run, an instance replaced, a running job deleted);
- SIGKILL after a random short delay, while requests (and races) are in flight.
Each case then runs `apply -y` once: it must succeed, `plan --detailed-exitcode` must be 0,
and the server must list exactly the objects the spec asks for. Cases run a few at a time
(each has its own user and folder).
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.apply.applykit import Project, live_names
from tests.support import LocalServer, UserSession, new_user

FRESH = """
version: 1
project: crash
instances:
  box: {speed_tier: fast, max_price: 2.0}
jobs:
  first: {command: "echo one", timeout_minutes: 10}
  second: {command: "echo after ${job.first.id}", timeout_minutes: 10}
"""
FRESH_WRITES = 6  # three creates, two ledger writes each

BEFORE = """
version: 1
project: change
instances:
  box: {speed_tier: fast, max_price: 2.0}
jobs:
  first: {command: "echo one", timeout_minutes: 10, run_policy: on_change}
  sleeper: {command: "sleep 120", timeout_minutes: 10}
"""
AFTER = """
version: 1
project: change
instances:
  box: {speed_tier: medium, max_price: 2.0}
jobs:
  first: {command: "echo two", timeout_minutes: 10, run_policy: on_change}
"""
CHANGE_WRITES = 6  # replace, run, delete: two ledger writes each
FRESH_LIVE = (Counter({"crash-first": 1, "crash-second": 1}), Counter({"crash-box": 1}))
CHANGED_LIVE = (Counter({"change-first": 2, "change-sleeper": 1}), Counter({"change-box": 1}))


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    server = LocalServer(tmp_path_factory.mktemp("crash-plane")).start()
    yield server
    server.stop()


def case(plane: LocalServer, root: Path, name: str) -> tuple[Project, UserSession]:
    user = new_user(plane.url)
    home = root / name / "home"
    home.mkdir(parents=True)
    return Project(root / name / "work", home, user.url, user.token), user


def rerun_converges(
    proj: Project,
    user: UserSession,
    expected: tuple[Counter[str], Counter[str]],
    check: Callable[[], None] = lambda: None,
) -> None:
    proj("apply", "-y", timeout=180)
    proj("plan", "--detailed-exitcode")
    assert proj.state()["pending"] == []
    assert live_names(user.client) == expected
    managed = {e["remote_id"] for e in proj.state()["resources"].values()}
    for job in user.client.jobs.list_all():  # nothing left running that no address owns
        if job.status not in ("completed", "failed", "cancelled", "timeout"):
            assert job.id in managed, job
    for instance in user.client.instances.list_all():
        assert str(instance.id) in managed, instance
    check()
    proj("destroy", "-y")  # frees the machines for the other cases


def crash_fresh(plane: LocalServer, root: Path, n: int) -> None:
    proj, user = case(plane, root, f"fresh-{n}")
    proj.write(FRESH)
    died = proj.popen("apply", "-y", extra_env={"DUMONT_TEST_CRASH_AFTER": str(n)})
    died.communicate(timeout=180)
    assert died.returncode == 137, n
    rerun_converges(proj, user, FRESH_LIVE)


def crash_change(plane: LocalServer, root: Path, n: int) -> None:
    proj, user = case(plane, root, f"change-{n}")
    proj.write(BEFORE)
    proj("apply", "-y", timeout=180)
    sleeper = proj.remote_id("job.sleeper")
    proj.write(AFTER)
    died = proj.popen("apply", "-y", extra_env={"DUMONT_TEST_CRASH_AFTER": str(n)})
    died.communicate(timeout=180)
    assert died.returncode == 137, n

    def check() -> None:
        assert user.client.jobs.get(sleeper).status == "cancelled"
        box = proj.state()["resources"]["instance.box"]
        assert box["applied_spec"]["speed_tier"] == "medium"

    rerun_converges(proj, user, CHANGED_LIVE, check)


def kill_in_flight(plane: LocalServer, root: Path, delay: float) -> str:
    """SIGKILL `delay` s after the first change started; return the re-run's plan output."""
    proj, user = case(plane, root, f"kill-{delay:.2f}")
    proj.write(FRESH)
    victim = proj.popen("apply", "-y", "--json")
    assert victim.stdout is not None
    for line in victim.stdout:
        if json.loads(line)["type"] == "change_start":
            break
    time.sleep(delay)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    replan = proj("plan").stdout
    rerun_converges(proj, user, FRESH_LIVE)
    return replan


def run_all(cases: list[Callable[[], object]]) -> list[object]:
    with ThreadPoolExecutor(max_workers=3) as pool:
        return [future.result() for future in [pool.submit(c) for c in cases]]


@pytest.mark.slow
def test_killed_after_each_ledger_write_of_a_fresh_apply(
    plane: LocalServer, tmp_path: Path
) -> None:
    run_all([lambda n=n: crash_fresh(plane, tmp_path, n) for n in range(1, FRESH_WRITES + 1)])


@pytest.mark.slow
def test_killed_after_each_ledger_write_of_a_changing_apply(
    plane: LocalServer, tmp_path: Path
) -> None:
    run_all([lambda n=n: crash_change(plane, tmp_path, n) for n in range(1, CHANGE_WRITES + 1)])


@pytest.mark.slow
def test_killed_while_requests_are_in_flight(plane: LocalServer, tmp_path: Path) -> None:
    rng = random.Random(20261128)
    delays = sorted(rng.uniform(0.05, 1.0) for _ in range(4))
    replans = run_all([lambda d=d: kill_in_flight(plane, tmp_path, d) for d in delays])
    # The kills land mid-apply: some re-runs find what the dead apply made and adopt it.
    assert any("<= adopt " in str(text) for text in replans), replans


@pytest.mark.slow
def test_the_crash_hook_fires_only_when_asked(plane: LocalServer, tmp_path: Path) -> None:
    proj, user = case(plane, tmp_path, "no-crash")
    proj.write(FRESH)
    done = proj.popen("apply", "-y", extra_env={"DUMONT_TEST_CRASH_AFTER": str(FRESH_WRITES + 1)})
    done.communicate(timeout=180)
    assert done.returncode == 0
    assert live_names(user.client) == FRESH_LIVE
