"""`num_nodes` end to end as a user runs it: a spec with a job of two nodes is planned (the line
says the nodes, the price counts every node's GPUs), applied with `--auto-approve` against the
real local control plane (two ranks, each in its own sandbox), each rank's log read with
`dumont job logs ID --rank=N`, and the next plan is empty."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.apply.applykit import Project
from tests.support import UserSession

SPEC = """
version: 1
project: pair
jobs:
  train:
    command: echo "rank=$RANK world=$WORLD_SIZE node=$NODE_RANK"
    gpu_type: H100
    num_gpus: 2
    num_nodes: {nodes}
    use_spot: false
    timeout_minutes: 10
    wait: completed
"""


@pytest.fixture
def proj(tmp_path: Path, home: Path, user: UserSession) -> Project:
    return Project(tmp_path / "work", home, user.url, user.token)


def planned(proj: Project) -> dict[str, object]:
    [change] = json.loads(proj("plan", "-o", "json", code=None).stdout)["changes"]
    return dict(change)


def test_a_two_node_job_is_priced_per_node_applied_and_read_per_rank(
    proj: Project, user: UserSession
) -> None:
    # The machine's price: the same job on one node (on-demand, so it moves little).
    proj.write(SPEC.format(nodes=1))
    one = planned(proj)
    assert one["reason"] == "2x H100, on-demand"
    machine = float(str(one["hourly_cost"]))
    assert machine > 0

    proj.write(SPEC.format(nodes=2))
    two = planned(proj)
    assert two["reason"] == "2 nodes of 2x H100, on-demand"
    assert two["attributes"]["num_nodes"] == 2  # type: ignore[index]
    assert float(str(two["hourly_cost"])) == pytest.approx(2 * machine, rel=0.02)
    text = proj("plan").stdout
    line = next(x for x in text.splitlines() if "create job.train" in x)
    assert re.search(r"\(2 nodes of 2x H100, on-demand\)\s+\$\d+\.\d\d/h", line), line

    applied = proj("apply", "--auto-approve", timeout=180)
    assert "Apply complete" in applied.stdout, applied.stdout
    job_id = proj.remote_id("job.train")
    job = user.client.jobs.get(job_id)
    assert (job.status, job.raw["num_nodes"], job.raw["exit_code"]) == ("completed", 2, 0)
    # The server bills both machines: its price is the plan's, within the market's drift.
    assert job.price_per_hour == pytest.approx(2 * machine, rel=0.02)

    for rank in (0, 1):
        shown = proj("job", "logs", job_id, f"--rank={rank}").stdout
        assert shown == f"rank={rank} world=2 node={rank}\n", shown
    assert proj("job", "logs", job_id).stdout == "rank=0 world=2 node=0\n"
    status = json.loads(proj("job", "status", job_id, "-o", "json").stdout)
    assert status["num_nodes"] == 2

    # Converged: the second plan is empty (exit 0 with --detailed-exitcode).
    again = proj("plan", "--detailed-exitcode")
    assert "No changes" in again.stdout, again.stdout


def test_a_failed_rank_fails_the_apply_and_names_the_log_that_says_why(proj: Project) -> None:
    proj.write(
        """
        version: 1
        project: pair
        jobs:
          train:
            command: if [ "$RANK" = 1 ]; then echo "rank 1 broke"; exit 3; fi; sleep 30
            num_nodes: 2
            timeout_minutes: 10
            wait: completed
        """
    )
    failed = proj("apply", "--auto-approve", code=5, timeout=180)
    job_id = proj.remote_id("job.train")
    hint = f"rank 1: command exited with code 3; see its logs: dumont job logs {job_id} --rank=1"
    assert hint in failed.stdout + failed.stderr, (failed.stdout, failed.stderr)
    assert "rank 1 broke\n" in proj("job", "logs", job_id, "--rank=1").stdout
