"""Invariant 6: two applies on one ledger at once: one proceeds, the other stops with the
holder's pid, host and start time; nothing is created twice."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.apply.applykit import Project, live_names, wait_until
from tests.support import UserSession

# `hold` runs until the test creates the gate file (at most 120 s), so the apply holds the lock
# for as long as the test needs, however slow the machine (a fixed sleep ran out under load).
# The gate is in a folder the session server shares (read-only) with every job.
SPEC = """
version: 1
project: locked
jobs:
  hold:
    command: "timeout 120 sh -c 'until [ -f {gate} ]; do sleep 0.05; done'"
    timeout_minutes: 10
    wait: completed
  other:
    command: echo other
    timeout_minutes: 10
"""


def first_to_exit(procs: tuple[subprocess.Popen[str], ...], limit: float = 120) -> int:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                return proc.pid
        time.sleep(0.05)
    raise AssertionError("neither apply ended")


@pytest.mark.slow
def test_two_concurrent_applies_one_proceeds_the_other_names_the_holder(
    tmp_path: Path, shared_path: Path, home: Path, user: UserSession
) -> None:
    proj = Project(tmp_path / "work", home, user.url, user.token)
    gate = shared_path / "gate"  # jobs see only the folders shared with them
    proj.write(SPEC.format(gate=gate))
    first, second = proj.popen("apply", "-y"), proj.popen("apply", "-y")
    try:
        first_to_exit((first, second))  # the loser: the winner waits for the gate
    finally:
        gate.touch()
    results = {p.pid: (p, *p.communicate(timeout=120)) for p in (first, second)}
    codes = sorted(p.returncode for p, _, _ in results.values())
    assert codes == [0, 1], [(p.returncode, err) for p, _, err in results.values()]
    winner = next(pid for pid, (p, _, _) in results.items() if p.returncode == 0)
    loser_err = next(err for p, _, err in results.values() if p.returncode == 1)
    pattern = (
        rf"Error: state is locked by pid {winner} on host {re.escape(socket.gethostname())} "
        r"since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(dumont apply\); "
        r"if that process is gone, run `dumont force-unlock`"
    )
    assert re.fullmatch(pattern, loser_err.strip()), loser_err
    assert live_names(user.client) == ({"locked-hold": 1, "locked-other": 1}, {})

    again = proj("apply", "-y")  # the lock is free again, and there is nothing left to do
    assert "No changes." in again.stdout
    assert live_names(user.client)[0] == {"locked-hold": 1, "locked-other": 1}


@pytest.mark.slow
def test_the_lock_holder_is_recorded_while_apply_runs(
    tmp_path: Path, shared_path: Path, home: Path, user: UserSession
) -> None:
    proj = Project(tmp_path / "work", home, user.url, user.token)
    gate = shared_path / "gate"  # jobs see only the folders shared with them
    proj.write(SPEC.format(gate=gate))
    running = proj.popen("apply", "-y")
    lock = proj.folder / ".dumont" / "state.lock"

    def holder() -> dict[str, object]:
        try:
            data = json.loads(lock.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    try:
        wait_until(lambda: holder().get("pid") == running.pid, what="the lock holder record")
        assert holder()["command"] == "dumont apply"
        plan = proj("plan", "--detailed-exitcode", code=None)  # plan reads, it does not lock
        assert plan.returncode in (0, 2), plan.stderr
        # ... but it says that an apply is changing what it reads.
        assert (
            f"warning: the state is being changed by pid {running.pid} on host"
        ) in plan.stderr and "(dumont apply): what this shows may change" in plan.stderr
    finally:
        gate.touch()
    running.communicate(timeout=120)
    assert running.returncode == 0
    assert holder() == {}  # released
