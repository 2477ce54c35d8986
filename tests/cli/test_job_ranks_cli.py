"""`dumont job … --nodes/--rank` end to end: a job of several nodes runs as ranks on the local
control plane; the CLI creates it, shows its nodes and reads each rank's log."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.server.jobfixtures import wait_for
from tests.support import UserSession, cli_env

Cli = Callable[..., subprocess.CompletedProcess[str]]
RANK_LINE = 'echo "I am rank $RANK of $WORLD_SIZE"'


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result


def test_create_nodes_status_and_each_ranks_log(cli: Cli, user: UserSession) -> None:
    created = ok(cli("job", "create", "pair", f"--command={RANK_LINE}", "--nodes=2"))
    first = created.stdout.splitlines()[0]
    assert re.fullmatch(r"Created job job_\w+ \(pair\): \w+; RTX 4090 spot on 2 nodes at .*", first)
    job_id = first.split()[2]
    ok(cli("job", "wait", job_id, "--poll=0.2"))

    status = ok(cli("job", "status", job_id)).stdout
    lines = status.splitlines()
    gpu = next(i for i, line in enumerate(lines) if line.startswith("gpu_type"))
    assert re.fullmatch(r"num_nodes\s+2", lines[gpu + 1]), status
    assert json.loads(ok(cli("job", "status", job_id, "-o", "json")).stdout)["num_nodes"] == 2

    assert ok(cli("job", "logs", job_id)).stdout == "I am rank 0 of 2\n"
    assert ok(cli("job", "logs", job_id, "--rank=1")).stdout == "I am rank 1 of 2\n"
    answer = json.loads(ok(cli("job", "logs", job_id, "--rank", "1", "-o", "json")).stdout)
    assert answer["logs"] == "I am rank 1 of 2\n"


def test_follow_one_rank_until_the_job_ends(cli: Cli, user: UserSession) -> None:
    command = 'for i in 1 2 3; do echo "rank $RANK line $i"; sleep 0.2; done'
    job_id = user.client.jobs.create(name="follow", command=command, num_nodes=2).id
    started = time.monotonic()
    result = ok(cli("job", "logs", job_id, "--rank=1", "--follow", "--poll=0.2", timeout=60))
    assert time.monotonic() - started < 30
    assert result.stdout.splitlines() == [f"rank 1 line {i}" for i in (1, 2, 3)]
    assert "completed" in result.stderr


def test_a_rank_the_job_does_not_have_is_one_clear_error(cli: Cli, user: UserSession) -> None:
    job_id = user.client.jobs.create(name="one", command="true").id
    result = cli("job", "logs", job_id, "--rank=1")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr == (
        "Error: job logs: --rank=1: this job runs on 1 node: rank 0 only, not 1; "
        "leave out --rank for rank 0's log\n"
    )
    for bad, says in (("-1", "greater than or equal to 0"), ("16", "less than or equal to 15")):
        refused = cli("job", "logs", job_id, f"--rank={bad}")
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert f"Error: Invalid value for '--rank': Input should be {says}" in refused.stderr


def test_ctrl_c_while_following_a_rank_says_how_to_follow_it_again(
    home: Path, user: UserSession
) -> None:
    command = 'echo "rank $RANK up"; sleep 60'
    job_id = user.client.jobs.create(name="ctrl-c", command=command, num_nodes=2).id
    wait_for(user, job_id, "running")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dumont_plan", "job", "logs", job_id, "--rank=1", "--follow"],
        env=cli_env(home, user.url, user.token),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == "rank 1 up\n"  # rank 1's log streams: it runs
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        user.client.jobs.cancel(job_id)
    assert proc.returncode == 130, err
    assert err == (
        f"Error: stopped following: job {job_id} is running and goes on on the server; "
        f"follow it again: `dumont job logs {job_id} --follow --rank=1`; "
        f"stop it: `dumont job cancel {job_id}`\n"
    )


def test_a_wait_on_a_job_a_rank_failed_points_at_that_ranks_log(
    cli: Cli, user: UserSession
) -> None:
    command = 'if [ "$RANK" = 1 ]; then echo "rank 1 broke"; exit 3; fi; sleep 30'
    result = cli("job", "create", "broken", f"--command={command}", "--nodes=2", "--wait")
    assert result.returncode == 5, (result.stdout, result.stderr)
    found = re.search(r"job_[0-9a-f]{8}", result.stderr)
    assert found is not None, result.stderr
    job_id = found.group()
    assert result.stderr.splitlines()[-1] == (
        f"Error: job {job_id} ended failed: rank 1: command exited with code 3; "
        f"see its log: `dumont job logs {job_id} --rank=1`"
    )
