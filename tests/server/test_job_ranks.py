"""Multi-node jobs on the local executor (`provider/ranks.py`), against the real session server
over loopback: `num_nodes` ranks, each in a sandbox of its own with the torch-distributed
environment, a gloo all_reduce across them, logs per rank, a failed rank failing the group,
cancel and retries of the whole group, and the price of every node."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from dumont_plan.server.provider.jobs import LOST_WHILE_DOWN
from dumont_plan.server.provider.sandbox import tagged_pids
from tests.server.jobfixtures import (
    GATE,
    JOBS,
    Counter,
    create_job,
    get_job,
    group_alive,
    job_dir,
    runner_state,
    wait_for,
    wait_until,
)
from tests.server.test_jobs_restart import as_user_of, restarted
from tests.support import LocalServer, UserSession, new_user

ENV_LINE = (
    'echo "rank=$RANK world=$WORLD_SIZE node=$NODE_RANK local=$LOCAL_RANK'
    ' nodes=$NUM_NODES addr=$MASTER_ADDR port=$MASTER_PORT"'
)
# Each rank all-reduces rank+1 over gloo from the environment alone, as under torchrun.
ALL_REDUCE = """
import torch, torch.distributed as dist
dist.init_process_group("gloo")
value = torch.tensor([dist.get_rank() + 1.0])
dist.all_reduce(value)
print(f"rank {dist.get_rank()} of {dist.get_world_size()}: sum {value.item():g}", flush=True)
dist.destroy_process_group()
"""


def rank_logs(user: UserSession, job_id: str, rank: int, **params: object) -> str:
    with user.http() as http:
        answer = http.get(f"{JOBS}{job_id}/logs", params={"rank": rank, **params})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["logs"])


def open_gates(server: LocalServer, job_id: str, nodes: int) -> None:
    """`jobfixtures.open_gate` for every rank (rank r >= 1 has its own workspace)."""
    for rank in range(nodes):
        root = job_dir(server, job_id) / ("" if rank == 0 else f"rank-{rank}")
        (root / "workspace" / ".gate").touch()


def no_process_left(server: LocalServer, job_id: str) -> bool:
    state = runner_state(server, job_id)
    groups = [state.get("child_pgid"), *(state.get("child_pgids") or [])]
    return not tagged_pids(job_id) and not any(group_alive(g) for g in groups if g)


def test_each_rank_runs_in_its_own_sandbox_with_the_distributed_environment(
    server: LocalServer, user: UserSession
) -> None:
    command = f"touch mine-$RANK; {ENV_LINE}; sleep 0.5; ls; pwd"
    job = create_job(user, command=command, num_nodes=3)
    assert job["num_nodes"] == 3
    done = wait_for(user, job["id"], "completed")
    assert done["num_nodes"] == 3 and done["exit_code"] == 0
    with user.http() as http:
        listed = http.get(JOBS).json()["jobs"]
    assert [j["num_nodes"] for j in listed if j["id"] == job["id"]] == [3]

    ports = set()
    for rank in range(3):
        text = rank_logs(user, job["id"], rank)
        found = re.search(
            rf"^rank={rank} world=3 node={rank} local=0 nodes=3 addr=127\.0\.0\.1 port=(\d+)$",
            text,
            re.M,
        )
        assert found, text
        ports.add(found.group(1))
        # Its own workspace: only its own file, never another rank's.
        assert f"mine-{rank}\n/workspace\n" in text, text
        assert all(f"mine-{other}" not in text for other in range(3) if other != rank)
    assert len(ports) == 1 and 1024 <= int(ports.pop()) <= 65535
    # Without `rank`, the log is rank 0's (the job's own log).
    with user.http() as http:
        plain = http.get(f"{JOBS}{job['id']}/logs").json()["logs"]
    assert plain == rank_logs(user, job["id"], 0)
    # The ranks' sandboxes are gone with the job (auto_destroy), their logs stay.
    folder = job_dir(server, job["id"])
    assert not (folder / "rank-1" / "workspace").exists()
    assert (folder / "rank-2.log").is_file()


def test_a_one_node_job_gets_no_distributed_environment(user: UserSession) -> None:
    job = create_job(user, command='echo "[${RANK-unset}] [${MASTER_PORT-unset}]"')
    done = wait_for(user, job["id"], "completed")
    assert done["num_nodes"] == 1
    assert rank_logs(user, job["id"], 0) == "[unset] [unset]\n"


@pytest.mark.slow
def test_a_gloo_all_reduce_across_two_ranks_gives_the_sum_on_both(user: UserSession) -> None:
    if importlib.util.find_spec("torch") is None:  # not imported here: the job imports it
        pytest.skip("torch is not installed (pip install -e '.[finetune]')")
    command = f"\"$DUMONT_PYTHON\" - <<'EOF'\n{ALL_REDUCE}EOF"
    job = create_job(user, command=command, num_nodes=2)
    done = wait_for(user, job["id"], {"completed", "failed"}, timeout=180)
    logs = [rank_logs(user, job["id"], rank) for rank in (0, 1)]
    assert done["status"] == "completed", (done, logs)
    assert "rank 0 of 2: sum 3\n" in logs[0]
    assert "rank 1 of 2: sum 3\n" in logs[1]


def test_a_failed_rank_fails_the_job_and_stops_the_others(
    server: LocalServer, user: UserSession
) -> None:
    command = 'if [ "$RANK" = 1 ]; then sleep 0.5; exit 3; fi; echo waiting; sleep 60'
    job = create_job(user, command=command, num_nodes=2)
    failed = wait_for(user, job["id"], "failed", timeout=30)
    assert failed["error_message"] == "rank 1: command exited with code 3"
    assert failed["exit_code"] == 3
    first = rank_logs(user, job["id"], 0)
    assert "waiting\n" in first
    assert "[dumont] rank 1 failed (exit code 3): stopping the others\n" in first
    assert "[dumont] job failed: rank 1: command exited with code 3\n" in first
    wait_until(lambda: no_process_left(server, job["id"]), timeout=10, what="no rank left")


def test_cancel_stops_every_rank(server: LocalServer, user: UserSession) -> None:
    job = create_job(user, command="echo started; sleep 60", num_nodes=3)
    wait_for(user, job["id"], "running")
    for rank in range(3):
        wait_until(lambda r=rank: "started" in rank_logs(user, job["id"], r), what="rank up")
    state = runner_state(server, job["id"])
    assert len(state["child_pgids"]) == 3
    assert all(group_alive(g) for g in state["child_pgids"])
    assert len(tagged_pids(job["id"])) >= 3

    with user.http() as http:
        answer = http.post(f"{JOBS}{job['id']}/cancel")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "cancelled"
    assert not tagged_pids(job["id"])
    assert not any(group_alive(g) for g in state["child_pgids"])
    server.reconcile()
    assert get_job(user, job["id"])["status"] == "cancelled"
    # A cancel is no rank's failure: each log ends with the cancel, none says a rank failed.
    wait_until(lambda: runner_state(server, job["id"]).get("result"), what="the runner's end")
    for rank in range(3):
        text = rank_logs(user, job["id"], rank)
        assert text.endswith("started\n[dumont] job cancelled\n"), text


def test_a_retry_runs_the_whole_group_again(user: UserSession) -> None:
    counter = Counter()
    try:
        # Rank 1 fails its first run only: a key per rank counts its runs.
        url = f"{counter.url}/{uuid.uuid4().hex}-$RANK"
        fetch = f"import urllib.request; print(urllib.request.urlopen('{url}').read().decode())"
        command = (
            f'n=$(python -c "{fetch}"); echo "rank $RANK run $n";'
            ' if [ "$RANK" = 1 ] && [ "$n" = 1 ]; then exit 3; fi; sleep 0.2'
        )
        job = create_job(user, command=command, num_nodes=2, max_retries=1)
        done = wait_for(user, job["id"], "completed", timeout=60)
    finally:
        counter.close()
    assert done["attempt"] == 2
    logs = [rank_logs(user, job["id"], rank) for rank in (0, 1)]
    retried = "[dumont] attempt 1 failed: rank 1: command exited with code 3; retrying\n"
    assert all(retried in text for text in logs), logs
    assert "rank 1 run 1\n" in logs[1] and "rank 1 run 2\n" in logs[1]


def test_a_rank_out_of_range_is_a_422(user: UserSession) -> None:
    two = create_job(user, command="true", num_nodes=2)
    one = create_job(user, command="true")
    with user.http() as http:
        for job, rank in ((two, 2), (one, 1), (two, -1), (two, "x")):
            answer = http.get(f"{JOBS}{job['id']}/logs", params={"rank": rank})
            assert answer.status_code == 422, answer.text
            assert answer.json()["details"][0]["loc"] == ["query", "rank"]
        wrong = http.get(f"{JOBS}{two['id']}/logs", params={"rank": 2}).json()
    assert wrong["details"][0]["msg"] == "this job runs on 2 nodes: ranks 0-1, not 2"
    assert rank_logs(user, two["id"], 1, tail=5) == ""  # in range: an (empty) log


def test_the_price_counts_every_node(server: LocalServer, user: UserSession) -> None:
    # On-demand: its price moves little between the creates.
    one = create_job(user, command="true", gpu_type="H100", use_spot=False)
    four = create_job(user, command=GATE, gpu_type="H100", use_spot=False, num_nodes=4)
    assert four["price_per_hour"] == pytest.approx(4 * one["price_per_hour"], rel=0.02)
    wait_for(user, four["id"], "running")
    open_gates(server, four["id"], 4)
    done = wait_for(user, four["id"], "completed")
    # The cost is the job's hours at the price of its four nodes (both rounded to 4 places).
    price = done["price_per_hour"]
    assert done["total_cost"] == pytest.approx(done["gpu_hours"] * price, abs=5e-5 * (price + 1))
    assert done["total_cost"] > 0


def test_a_job_asks_for_at_most_16_nodes(user: UserSession) -> None:
    with user.http() as http:
        refused = http.post(JOBS, json={"command": "true", "num_nodes": 17})
    assert refused.status_code == 422, refused.text
    assert refused.json()["details"][0]["loc"] == ["body", "num_nodes"]


def test_a_rank_can_read_nothing_of_another_jobs_ranks(
    server: LocalServer, user: UserSession, tmp_path: Path
) -> None:
    # A rank of one job looks for another job's rank workspace on the host: not there.
    other = create_job(user, command=f"echo other > theirs.txt; {GATE}", num_nodes=2)
    wait_for(user, other["id"], "running")
    target = job_dir(server, other["id"]) / "rank-1" / "workspace"
    wait_until(lambda: (target / "theirs.txt").exists(), what="the other job's file")
    probe = create_job(
        user, command=f"cat {target}/theirs.txt || echo unreachable; ls /workspace", num_nodes=2
    )
    wait_for(user, probe["id"], "completed")
    open_gates(server, other["id"], 2)
    for rank in (0, 1):
        text = rank_logs(user, probe["id"], rank)
        assert "unreachable" in text and "other" not in text, text
    wait_for(user, other["id"], "completed")


@pytest.mark.slow
def test_a_restart_of_the_control_plane_reattaches_every_rank(tmp_path: Path) -> None:
    server = LocalServer(tmp_path / "plane").start()
    try:
        user = new_user(server.url)
        job = create_job(user, command=f"echo before $RANK; {GATE}; echo after $RANK", num_nodes=2)
        wait_for(user, job["id"], "running")
        state = runner_state(server, job["id"])
        server = restarted(server)  # SIGKILL: its runner and ranks live on
        user = as_user_of(server, user)
        assert get_job(user, job["id"])["status"] == "running"
        assert all(group_alive(g) for g in state["child_pgids"])
        open_gates(server, job["id"], 2)
        wait_for(user, job["id"], "completed")
        assert [rank_logs(user, job["id"], r) for r in (0, 1)] == [
            "before 0\nafter 0\n",
            "before 1\nafter 1\n",
        ]
    finally:
        server.stop()


@pytest.mark.slow
def test_a_group_whose_runner_died_while_the_plane_was_down_fails(tmp_path: Path) -> None:
    server = LocalServer(tmp_path / "plane").start()
    try:
        user = new_user(server.url)
        job = create_job(user, command="echo up; sleep 60", num_nodes=2)
        wait_for(user, job["id"], "running")
        wait_until(lambda: "up" in rank_logs(user, job["id"], 1), what="rank 1 up")
        state = runner_state(server, job["id"])
        server.kill()
        os.kill(state["pid"], signal.SIGKILL)
        server = LocalServer(server.data_dir).start()
        user = as_user_of(server, user)
        failed = wait_for(user, job["id"], "failed")
        assert failed["error_message"] == LOST_WHILE_DOWN
        wait_until(lambda: no_process_left(server, job["id"]), timeout=10, what="no rank left")
    finally:
        server.stop()


def test_the_group_stays_running_until_its_last_rank_ends(
    server: LocalServer, user: UserSession
) -> None:
    job = create_job(user, command=f'if [ "$RANK" = 1 ]; then {GATE}; fi; echo done', num_nodes=2)
    wait_until(lambda: rank_logs(user, job["id"], 0) == "done\n", what="rank 0 to end")
    server.reconcile()
    assert get_job(user, job["id"])["status"] == "running"
    open_gates(server, job["id"], 2)
    assert wait_for(user, job["id"], "completed")["exit_code"] == 0


def test_unsandboxed_ranks_still_get_a_workspace_each(tmp_path: Path) -> None:
    # The runner itself, as the control plane starts it, on a spec without isolation (a server
    # where bubblewrap does not work): each rank's paths are its own sandbox's.
    folder = tmp_path / "job"
    folder.mkdir()
    spec = {
        "job_id": f"job_{uuid.uuid4().hex[:8]}",
        "command": 'touch "mine-$RANK"; ls; echo "$HOME $WORLD_SIZE"',
        "num_nodes": 2,
        "timeout_seconds": 60,
        "sandbox": {"isolation": "none"},
    }
    (folder / "spec.json").write_text(json.dumps(spec))
    runner = [sys.executable, "-m", "dumont_plan.server.provider.runner", str(folder)]
    subprocess.run([*runner, "--token", "t"], check=True, timeout=60)
    assert json.loads((folder / "state.json").read_text())["result"] == "completed"
    assert (folder / "job.log").read_text() == f"mine-0\n{folder / 'workspace'} 2\n"
    assert (folder / "rank-1.log").read_text() == f"mine-1\n{folder / 'rank-1' / 'workspace'} 2\n"
