"""`dumont instance exec`: what works instead of the printed `ssh` line on a local instance."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.instancekit import Cli, ok
from tests.cli.test_instance_cli import running_instance, wait_running
from tests.support import LocalServer, UserSession, cli_env, expect_api_error, new_user

pytestmark = pytest.mark.slow


def test_exec_runs_in_the_instance_workspace_and_keeps_the_exit_code(
    run: Cli, user: UserSession
) -> None:
    iid = running_instance(user.client).id
    wrote = run("instance", "exec", str(iid), "--", "echo hello > note.txt; cat note.txt; pwd")
    assert ok(wrote).stdout == "hello\n/workspace\n"
    # The file is in the instance's workspace: a second exec sees it (state kept).
    assert ok(run("instance", "exec", str(iid), "--", "cat", "note.txt")).stdout == "hello\n"
    failed = run("instance", "exec", str(iid), "--", "echo oops >&2; exit 7")
    assert (failed.returncode, failed.stdout) == (7, "oops\n")
    as_json = json.loads(ok(run("instance", "exec", str(iid), "-o", "json", "--", "true")).stdout)
    assert {k: as_json[k] for k in ("exit_code", "timed_out", "output", "truncated")} == {
        "exit_code": 0,
        "timed_out": False,
        "output": "",
        "truncated": False,
    }


def test_exec_is_sandboxed_limited_and_private(
    run: Cli, user: UserSession, server: LocalServer
) -> None:
    iid = running_instance(user.client).id
    server_data_dir = server.data_dir.resolve()
    # The control plane's data (its database, other sandboxes) is not visible inside.
    peek = run("instance", "exec", str(iid), "--", f"ls {server_data_dir} 2>&1 | head -3")
    assert "dumont.db" not in peek.stdout and "sandboxes" not in peek.stdout
    slow = run("instance", "exec", str(iid), "--timeout", "1s", "--", "sleep 30")
    assert slow.returncode == 1 and "killed after 1s" in slow.stderr
    flood = run("instance", "exec", str(iid), "-o", "json", "--", "head -c 3000000 /dev/zero")
    answer = json.loads(ok(flood).stdout)
    assert answer["truncated"] is True and len(answer["output"]) == 1024 * 1024
    other = new_user(user.url)
    expect_api_error(lambda: other.client.instances.exec(iid, "id"), 404)
    user.client.instances.pause(iid)
    paused = run("instance", "exec", str(iid), "--", "true")
    assert paused.returncode == 1
    assert f"instance {iid} is not running; `dumont instance resume {iid}`" in paused.stderr
    user.client.instances.resume(iid)
    wait_running(user.client, iid)


def test_the_access_column_says_exec_not_an_ssh_that_is_refused(
    run: Cli, user: UserSession
) -> None:
    iid = running_instance(user.client).id
    shown = ok(run("instance", "get", str(iid))).stdout
    assert f"dumont instance exec {iid} -- COMMAND" in shown
    assert "ssh -p" not in shown


def test_ctrl_c_says_the_command_may_go_on(home: Path, user: UserSession) -> None:
    iid = running_instance(user.client).id
    proc = subprocess.Popen(
        [sys.executable, "-m", "dumont_plan", "instance", "exec", str(iid), "--", "sleep 30"],
        env=cli_env(home, user.url, user.token),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)  # the request is in flight (nothing to read before the command ends)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130 and "Traceback" not in err
    assert f"the command may go on in instance {iid} until its --timeout (60s)" in err
