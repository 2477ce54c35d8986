"""Jobs survive a restart of the control plane: a running job is re-attached, a runner that died
while the control plane was down fails the job with the reason (or is retried)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from dumont_plan.server.provider.jobs import LOST_WHILE_DOWN
from tests.server.jobfixtures import (
    GATE,
    Counter,
    create_job,
    get_job,
    group_alive,
    logs,
    open_gate,
    process_alive,
    runner_state,
    wait_for,
    wait_until,
)
from tests.support import LocalServer, UserSession, new_user


def restarted(server: LocalServer) -> LocalServer:
    """SIGKILL the control plane (its runners live on) and start a new one on the same data."""
    server.kill()
    return LocalServer(server.data_dir).start()


def as_user_of(server: LocalServer, user: UserSession) -> UserSession:
    return UserSession(user.email, user.token, user.client, server.url)


@pytest.mark.slow
def test_a_running_job_is_reattached_after_a_restart(tmp_path: Path) -> None:
    server = LocalServer(tmp_path / "plane").start()
    try:
        user = new_user(server.url)
        job = create_job(user, command=f"echo before; {GATE}; echo after")
        wait_for(user, job["id"], "running")
        runner = runner_state(server, job["id"])["pid"]

        server = restarted(server)
        user = as_user_of(server, user)
        assert process_alive(runner)
        assert get_job(user, job["id"])["status"] == "running"
        open_gate(server, job["id"])

        done = wait_for(user, job["id"], "completed")
        assert done["exit_code"] == 0
        assert logs(user, job["id"]) == "before\nafter\n"
    finally:
        server.stop()


@pytest.mark.slow
def test_a_runner_lost_while_the_control_plane_was_down_fails_the_job(tmp_path: Path) -> None:
    server = LocalServer(tmp_path / "plane").start()
    try:
        user = new_user(server.url)
        job = create_job(user, command="echo up; sleep 60")
        wait_for(user, job["id"], "running")
        state = runner_state(server, job["id"])
        server.kill()
        os.kill(state["pid"], signal.SIGKILL)  # its command lives on, orphaned

        server = LocalServer(server.data_dir).start()
        user = as_user_of(server, user)
        failed = wait_for(user, job["id"], "failed")

        assert failed["error_message"] == LOST_WHILE_DOWN
        assert failed["completed_at"] is not None
        wait_until(lambda: not group_alive(state["child_pgid"]), what="the orphaned command to end")
    finally:
        server.stop()


@pytest.mark.slow
def test_an_interrupted_run_is_retried_when_max_retries_allows(tmp_path: Path) -> None:
    server = LocalServer(tmp_path / "plane").start()
    counter = Counter()
    try:
        user = new_user(server.url)
        once = f'{counter.shell()}; [ "$n" -gt 1 ] || sleep 60'
        job = create_job(user, command=f"echo run; {once}", max_retries=1)
        wait_until(lambda: counter.total() == 1, what="the first attempt to count itself")
        state = runner_state(server, job["id"])
        server.kill()
        os.kill(state["pid"], signal.SIGKILL)

        server = LocalServer(server.data_dir).start()
        user = as_user_of(server, user)
        done = wait_for(user, job["id"], "completed")

        assert done["attempt"] == 2
        text = logs(user, job["id"])
        assert f"[dumont] attempt 1 interrupted: {LOST_WHILE_DOWN}; retrying" in text
        assert text.endswith("[dumont] attempt 2 of 2\nrun\n")
        assert not group_alive(state["child_pgid"])
    finally:
        counter.close()
        server.stop()
