"""Jobs API (contract §5) against the real session server over loopback: shapes, lifecycle,
logs, cancel, outputs, retries, sources, per-user isolation and bad input."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from dumont_plan.server.provider.jobs import LOST_WHILE_UP
from dumont_plan.server.provider.market import get_market
from dumont_plan.server.provider.sandbox import Sandbox
from tests.server.jobfixtures import (
    GATE,
    JOBS,
    Counter,
    create_job,
    get_job,
    group_alive,
    job_dir,
    logs,
    make_git_repo,
    open_gate,
    process_alive,
    runner_state,
    wait_for,
    wait_until,
)
from tests.support import LocalServer, UserSession, assert_invisible_to, new_user

CONTRACT_FIELDS = {
    "id",
    "name",
    "source",
    "gpu_type",
    "status",
    "instance_id",
    "ssh_host",
    "ssh_port",
    "created_at",
    "started_at",
    "completed_at",
    "duration",
    "total_cost",
    "gpu_hours",
    "error_message",
}
ADDITIVE_FIELDS = {
    "use_spot",
    "num_gpus",
    "num_nodes",
    "price_per_hour",
    "timeout_minutes",
    "max_retries",
    "attempt",
    "exit_code",
    "start_at",
    "schedule_id",
}


def test_command_job_completes_with_its_output_in_the_logs(user: UserSession) -> None:
    job = create_job(user, name="hello", command="echo hello from the job; echo to stderr >&2")
    assert set(job) == CONTRACT_FIELDS | ADDITIVE_FIELDS
    assert re.fullmatch(r"job_[0-9a-f]{8}", job["id"])
    assert job["name"] == "hello"
    assert job["status"] in ("pending", "provisioning")
    assert job["duration"] == "N/A"
    assert (job["total_cost"], job["gpu_hours"]) == (0.0, 0.0)

    done = wait_for(user, job["id"], "completed")

    assert done["exit_code"] == 0
    assert done["attempt"] == 1
    assert done["error_message"] is None
    assert done["started_at"] is not None and done["completed_at"] is not None
    assert re.fullmatch(r"\d+s", done["duration"])
    assert logs(user, job["id"]) == "hello from the job\nto stderr\n"


def test_create_applies_the_contract_defaults_and_aliases(user: UserSession) -> None:
    job = create_job(user, command="true")
    assert re.fullmatch(r"job-\d{8}-\d{6}-[0-9a-f]{8}", job["name"])
    assert (job["source"], job["gpu_type"], job["num_gpus"]) == ("command", "RTX 4090", 1)
    assert (job["use_spot"], job["timeout_minutes"], job["max_retries"]) == (True, 480, 0)

    aliased = create_job(
        user, command="true", use_spot=True, spot=False, timeout=30, gpu_type="a100"
    )
    assert (aliased["use_spot"], aliased["timeout_minutes"]) == (False, 30)
    assert aliased["gpu_type"] == "A100"
    wait_for(user, job["id"], "completed")
    wait_for(user, aliased["id"], "completed")


def test_spot_is_priced_below_on_demand_and_cost_is_frozen_at_the_end(
    server: LocalServer, user: UserSession
) -> None:
    spot = create_job(user, command="sleep 0.5", gpu_type="RTX 4090", use_spot=True)
    on_demand = create_job(user, command="sleep 0.5", gpu_type="RTX 4090", use_spot=False)
    assert 0 < spot["price_per_hour"] < on_demand["price_per_hour"]

    for job in (spot, on_demand):
        done = wait_for(user, job["id"], "completed")
        assert done["gpu_hours"] > 0
        assert done["total_cost"] == pytest.approx(
            done["gpu_hours"] * done["price_per_hour"], abs=2e-4
        )
        server.reconcile()
        assert get_job(user, job["id"])["total_cost"] == done["total_cost"]


def test_offer_id_prices_the_job_on_that_machine(user: UserSession) -> None:
    machine = get_market().machines[0]
    job = create_job(user, command="true", offer_id=machine.offer_id, gpu_type="ignored")
    assert job["gpu_type"] == machine.gpu_name
    assert job["price_per_hour"] == pytest.approx(machine.price(True), rel=0.05)
    wait_for(user, job["id"], "completed")


def test_save_logs_false_drops_the_log_when_the_job_ends(user: UserSession) -> None:
    job = create_job(user, command="echo transient", save_logs=False)
    wait_for(user, job["id"], "completed")
    assert logs(user, job["id"]) == ""


def test_list_filters_by_status_pages_newest_first(user: UserSession) -> None:
    ok = [create_job(user, name=f"ok-{i}", command="true") for i in range(3)]
    bad = create_job(user, name="bad", command="exit 3")
    for job in ok:
        wait_for(user, job["id"], "completed")
    failed = wait_for(user, bad["id"], "failed")
    assert failed["exit_code"] == 3
    assert failed["error_message"] == "command exited with code 3"

    with user.http() as http:
        everything = http.get(JOBS).json()
        assert everything["total"] == 4
        assert [j["name"] for j in everything["jobs"]] == ["bad", "ok-2", "ok-1", "ok-0"]

        completed = http.get(JOBS, params={"status": "completed", "limit": 2}).json()
        assert completed["total"] == 3
        assert [j["name"] for j in completed["jobs"]] == ["ok-2", "ok-1"]
        rest = http.get(JOBS, params={"status": "completed", "limit": 2, "offset": 2}).json()
        assert (rest["total"], [j["name"] for j in rest["jobs"]]) == (3, ["ok-0"])

        assert http.get(JOBS, params={"status": "failed"}).json()["total"] == 1
        assert http.get(JOBS, params={"status": "running"}).json() == {"jobs": [], "total": 0}
        for params in ({"limit": 0}, {"limit": 101}, {"offset": -1}):
            assert http.get(JOBS, params=params).status_code == 422


def test_status_cost_and_logs_while_running_and_after(
    server: LocalServer, user: UserSession
) -> None:
    command = f"echo line1; echo line2; echo line3; {GATE}; echo after"
    job = create_job(user, command=command, gpu_type="H100", use_spot=False)
    running = wait_for(user, job["id"], "running")
    assert running["started_at"] is not None and running["completed_at"] is None

    wait_until(lambda: "line3" in logs(user, job["id"]), what="line3 in the logs")
    assert logs(user, job["id"]) == "line1\nline2\nline3\n"
    assert logs(user, job["id"], tail=2) == "line2\nline3\n"
    first = get_job(user, job["id"])

    def grown() -> bool:
        now = get_job(user, job["id"])
        assert now["status"] == "running"
        return bool(
            now["gpu_hours"] > first["gpu_hours"] and now["total_cost"] > first["total_cost"]
        )

    wait_until(grown, what="the running job's hours and cost to grow")

    open_gate(server, job["id"])
    wait_for(user, job["id"], "completed")
    assert logs(user, job["id"]) == "line1\nline2\nline3\nafter\n"
    assert logs(user, job["id"], tail=1) == "after\n"
    assert logs(user, job["id"], tail=0) == ""
    assert logs(user, job["id"], tail=100) == "line1\nline2\nline3\nafter\n"


def test_long_logs_are_neither_truncated_nor_slow_to_tail(user: UserSession) -> None:
    job = create_job(user, command="seq 1 100000")
    wait_for(user, job["id"], "completed")
    full = logs(user, job["id"])
    assert len(full) > 500_000
    assert full == "".join(f"{n}\n" for n in range(1, 100001))
    assert logs(user, job["id"], tail=3) == "99998\n99999\n100000\n"


def test_cancel_stops_the_processes_and_the_status_never_flips(
    server: LocalServer, user: UserSession
) -> None:
    job = create_job(user, command="echo started; sleep 60")
    wait_for(user, job["id"], "running")
    wait_until(lambda: "started" in logs(user, job["id"]), what="the job's first line")
    state = runner_state(server, job["id"])
    assert process_alive(state["pid"]) and group_alive(state["child_pgid"])

    with user.http() as http:
        answer = http.post(f"{JOBS}{job['id']}/cancel")
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "cancelled"
        assert answer.json()["completed_at"] is not None

        assert not process_alive(state["pid"])
        assert not group_alive(state["child_pgid"])
        server.reconcile()
        assert get_job(user, job["id"])["status"] == "cancelled"

        again = http.post(f"{JOBS}{job['id']}/cancel")
        assert again.status_code == 400
        assert again.json() == {"error": f"Job {job['id']} is already finished"}


def test_auto_destroy_removes_the_workspace_and_keeps_outputs(
    server: LocalServer, user: UserSession
) -> None:
    command = "mkdir -p output/sub && echo result > output/result.txt && echo n > output/sub/n.txt"
    job = create_job(user, command=command + " && echo scratch > scratch.txt")
    wait_for(user, job["id"], "completed")

    assert not (job_dir(server, job["id"]) / "workspace").exists()
    with user.http() as http:
        listing = http.get(f"{JOBS}{job['id']}/outputs").json()
        assert listing == {
            "job_id": job["id"],
            "outputs": [
                {"path": "output/result.txt", "size": 7},
                {"path": "output/sub/n.txt", "size": 2},
            ],
        }
        download = http.get(f"{JOBS}{job['id']}/outputs/output/result.txt")
        assert (download.status_code, download.content) == (200, b"result\n")
        missing = http.get(f"{JOBS}{job['id']}/outputs/scratch.txt")
        assert missing.status_code == 404
        assert missing.json() == {"error": f"Output scratch.txt not found for job {job['id']}"}


def test_without_auto_destroy_the_workspace_stays(server: LocalServer, user: UserSession) -> None:
    job = create_job(
        user,
        command="mkdir -p out && echo kept > out/a.txt && echo left > left.txt",
        auto_destroy=False,
        output_paths=["/workspace/out"],
    )
    wait_for(user, job["id"], "completed")
    workspace = job_dir(server, job["id"]) / "workspace"
    assert (workspace / "left.txt").read_text() == "left\n"
    with user.http() as http:
        outputs = http.get(f"{JOBS}{job['id']}/outputs").json()["outputs"]
    assert outputs == [{"path": "out/a.txt", "size": 5}]


def test_output_file_lookup_never_leaves_the_outputs_folder(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path)
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "ok.txt").write_text("ok")
    (tmp_path / "spec.json").write_text("{}")
    (tmp_path / "outputs" / "link").symlink_to(tmp_path / "spec.json")
    assert sandbox.output_file("ok.txt") == tmp_path / "outputs" / "ok.txt"
    (tmp_path / "outputs" / "dirlink").symlink_to(tmp_path)
    for bad in ("../spec.json", "/etc/passwd", "link", "", "dirlink/spec.json"):
        assert sandbox.output_file(bad) is None, bad


def test_setup_script_runs_before_the_command(user: UserSession) -> None:
    job = create_job(
        user,
        setup_script="echo setup-ran > marker.txt\nexport GREETING=hi-from-setup",
        command='cat marker.txt; echo "$GREETING"',
    )
    wait_for(user, job["id"], "completed")
    assert logs(user, job["id"]) == "setup-ran\nhi-from-setup\n"


def test_a_failing_setup_script_fails_the_job_before_the_command(user: UserSession) -> None:
    job = create_job(user, setup_script="exit 4", command="echo never")
    failed = wait_for(user, job["id"], "failed")
    assert failed["error_message"] == "setup_script failed (exit code 4)"
    assert "never" not in logs(user, job["id"])


def test_max_retries_retries_a_failing_run(user: UserSession) -> None:
    counter = Counter()
    try:
        flaky = create_job(
            user, command=f"{counter.shell()}; echo run-$n; [ $n -ge 2 ]", max_retries=3
        )
        done = wait_for(user, flaky["id"], "completed")
    finally:
        counter.close()
    always = create_job(user, command="echo failing; exit 5", max_retries=2)

    assert (done["attempt"], done["exit_code"]) == (2, 0)
    text = logs(user, flaky["id"])
    assert "run-1\n" in text and "run-2\n" in text
    assert "[dumont] attempt 1 failed: command exited with code 1; retrying" in text

    failed = wait_for(user, always["id"], "failed")
    assert (failed["attempt"], failed["exit_code"]) == (3, 5)
    assert logs(user, always["id"]).count("failing\n") == 3


@pytest.mark.slow
def test_source_git_clones_the_repo_and_runs_in_it(shared_path: Path, user: UserSession) -> None:
    url = make_git_repo(shared_path / "repo")
    main = create_job(user, source="git", git_url=url, command="bash run.sh")
    branch = create_job(
        user, source="git", git_url=url, git_branch="feature", command="bash run.sh"
    )
    wait_for(user, main["id"], "completed")
    wait_for(user, branch["id"], "completed")
    assert logs(user, main["id"]).endswith("from git main: repo\n")
    assert logs(user, branch["id"]).endswith("from git feature\n")

    missing = create_job(user, source="git", git_url=str(shared_path / "nope"), command="true")
    failed = wait_for(user, missing["id"], "failed")
    assert failed["error_message"] == "source step failed (exit code 128)"


def test_another_user_cannot_see_read_or_cancel_a_job(
    server: LocalServer, user: UserSession
) -> None:
    job = create_job(user, command="sleep 60")
    wait_for(user, job["id"], "running")
    other = new_user(server.url, "other")
    try:
        assert_invisible_to(
            other,
            [
                ("GET", f"{JOBS}{job['id']}"),
                ("GET", f"{JOBS}{job['id']}/logs"),
                ("POST", f"{JOBS}{job['id']}/cancel"),
                ("GET", f"{JOBS}{job['id']}/outputs"),
                ("GET", f"{JOBS}{job['id']}/outputs/output/x"),
            ],
        )
        with other.http() as http:
            answer = http.get(f"{JOBS}{job['id']}")
            assert answer.status_code == 404
            assert answer.json() == {"error": f"Job {job['id']} not found"}
            assert http.get(JOBS).json() == {"jobs": [], "total": 0}
        assert get_job(user, job["id"])["status"] == "running"
    finally:
        with user.http() as http:
            http.post(f"{JOBS}{job['id']}/cancel")


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"command": "x", "num_gpus": 9}, ["body", "num_gpus"]),
        ({"command": "x", "timeout_minutes": 5}, ["body", "timeout_minutes"]),
        ({"command": "x", "timeout": 5}, ["body", "timeout"]),
        ({"command": "x", "timeout": 2000}, ["body", "timeout"]),
        ({"command": "x", "max_retries": 6}, ["body", "max_retries"]),
        ({"command": "x", "disk_size": 5}, ["body", "disk_size"]),
        ({"command": "x", "name": ""}, ["body", "name"]),
        ({"command": "x", "source": "docker"}, ["body", "source"]),
        ({}, ["body", "command"]),
        ({"command": "  "}, ["body", "command"]),
        ({"source": "git", "command": "x"}, ["body", "git_url"]),
        ({"source": "huggingface"}, ["body", "hf_repo"]),
        ({"command": "x", "gpu_type": "GTX 9999"}, ["body", "gpu_type"]),
        ({"command": "x", "output_paths": ["/etc"]}, ["body", "output_paths"]),
        ({"command": "x", "offer_id": 1}, ["body", "offer_id"]),
    ],
)
def test_bad_input_is_a_422_naming_the_field(
    user: UserSession, fields: dict[str, object], loc: list[str]
) -> None:
    with user.http() as http:
        answer = http.post(JOBS, json={**fields, "hf_token": "hf_secret_in_bad_request"})
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"] == "Validation error"
    assert [d["loc"] for d in body["details"]] == [loc]
    assert "hf_secret_in_bad_request" not in answer.text


def test_unknown_status_filter_is_a_422(user: UserSession) -> None:
    with user.http() as http:
        answer = http.get(JOBS, params={"status": "done"})
    assert answer.status_code == 422
    assert [d["loc"] for d in answer.json()["details"]] == [["query", "status"]]


def test_paths_follow_the_contract(user: UserSession) -> None:
    with user.http() as http:
        assert http.post("/api/v1/jobs", json={"command": "true"}).status_code == 405
        redirect = http.get("/api/v1/jobs?limit=3")
        assert redirect.status_code == 307
        assert redirect.headers["location"].endswith("/api/v1/jobs/?limit=3")
        missing = http.get(f"{JOBS}job_00000000")
        assert missing.status_code == 404
        assert missing.json() == {"error": "Job job_00000000 not found"}
        assert http.get(f"{JOBS}job_00000000/logs").status_code == 404
        assert http.post(f"{JOBS}job_00000000/cancel").status_code == 404
        assert httpx.get(user.url + JOBS).status_code == 401


def test_create_is_idempotent_with_a_key(user: UserSession) -> None:
    with user.http() as http:
        headers = {"Idempotency-Key": f"key-{time.time_ns()}"}
        first = http.post(JOBS, json={"command": "true"}, headers=headers)
        second = http.post(JOBS, json={"command": "true"}, headers=headers)
        assert first.status_code == second.status_code == 201
        assert first.json()["id"] == second.json()["id"]
        assert http.get(JOBS).json()["total"] == 1
    wait_for(user, first.json()["id"], "completed")


def test_a_runner_killed_under_a_live_control_plane_fails_the_job(
    server: LocalServer, user: UserSession
) -> None:
    job = create_job(user, command="echo up; sleep 60")
    wait_for(user, job["id"], "running")
    state = runner_state(server, job["id"])
    os.kill(state["pid"], signal.SIGKILL)

    failed = wait_for(user, job["id"], "failed")
    assert failed["error_message"] == LOST_WHILE_UP
    wait_until(lambda: not group_alive(state["child_pgid"]), what="the job's processes to end")


def test_health_advertises_the_jobs_extensions(server: LocalServer) -> None:
    capabilities = httpx.get(server.url + "/health").json()["capabilities"]
    assert {"jobs.logs-tail", "jobs.outputs", "jobs.timeout-status", "jobs.offset"} <= set(
        capabilities
    )
