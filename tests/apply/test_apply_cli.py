"""`dumont apply` / `dumont destroy` end to end over loopback, as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.apply.applykit import Project, live_names, parse_events
from tests.support import UserSession


@pytest.fixture
def proj(tmp_path: Path, home: Path, user: UserSession) -> Project:
    return Project(tmp_path / "work", home, user.url, user.token)


def summary(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith(("Apply ", "Destroy ")))
    return lines[start:]


def test_a_failure_stops_only_its_dependents(proj: Project, user: UserSession) -> None:
    proj.write(
        """
        version: 1
        project: iso
        instances:
          box: {gpu_name: "RTX 4090", max_price: 0.01}
        jobs:
          needs-box:
            command: echo "box ${instance.box.id}"
            timeout_minutes: 10
          after:
            command: echo after
            timeout_minutes: 10
            depends_on: [job.needs-box]
          free:
            command: echo free
            timeout_minutes: 10
        """
    )
    result = proj("apply", "-y", code=3)
    lines = summary(result.stdout)
    assert lines[0] == "Apply finished with problems: 1 done, 1 failed, 2 skipped."
    assert lines[1] == "  done:    job.free"
    assert lines[2].startswith("  failed:  instance.box: ")
    assert lines[3:] == [
        "  skipped: job.needs-box (instance.box failed)",
        "  skipped: job.after (instance.box failed)",
    ]
    jobs, instances = live_names(user.client)
    assert jobs == {"iso-free": 1}
    assert not instances
    assert set(proj.state()["resources"]) == {"job.free"}
    assert proj.state()["pending"] == []


def test_a_waited_job_that_fails_exits_5_and_streams_its_log(proj: Project) -> None:
    proj.write(
        """
        version: 1
        project: waitfail
        jobs:
          bad:
            command: echo "about to fail" && exit 3
            timeout_minutes: 10
            wait: completed
        """
    )
    result = proj("apply", "-y", "--logs", code=5)
    assert "job.bad | about to fail" in result.stderr
    assert "job.bad: failed after" in result.stderr
    assert summary(result.stdout)[0] == (
        "Apply finished with problems: 0 done, 1 failed, 0 skipped."
    )
    assert "job.bad ended failed while waiting for completed" in result.stdout


@pytest.mark.slow
def test_a_wait_that_times_out_exits_4_then_destroy_cancels(
    proj: Project, user: UserSession
) -> None:
    proj.write(
        """
        version: 1
        project: slow
        jobs:
          nap:
            command: sleep 60
            timeout_minutes: 10
        """
    )
    result = proj("apply", "-y", "--wait", "--wait-timeout", "1", code=4)
    assert "waited 1s for job.nap to be completed" in result.stdout
    job_id = proj.remote_id("job.nap")
    assert user.client.jobs.get(job_id).status in ("provisioning", "starting", "running")
    result = proj("destroy", "-y")
    assert "- delete job.nap" in result.stdout
    assert summary(result.stdout)[0].startswith("Destroy complete: 1 done")
    assert user.client.jobs.get(job_id).status == "cancelled"
    assert proj.state()["resources"] == {}


RUN_POLICIES = """
version: 1
project: policies
defaults:
  job: {{timeout_minutes: 10, wait: completed}}
jobs:
  once: {{command: echo {v}, run_policy: once}}
  onchange: {{command: echo {v}, run_policy: on_change}}
  always: {{command: echo {v}, run_policy: always}}
"""


@pytest.mark.slow
def test_a_changed_finished_job_reruns_only_under_on_change_or_always(proj: Project) -> None:
    proj.write(RUN_POLICIES.format(v="v1"))
    proj("apply", "-y")
    first = {a: proj.remote_id(a) for a in ("job.once", "job.onchange", "job.always")}

    proj.write(RUN_POLICIES.format(v="v2"))
    plan = proj("plan").stdout
    assert "> run job.onchange" in plan and "> run job.always" in plan
    assert "job.once" not in "\n".join(line for line in plan.splitlines() if "> run" in line)
    result = proj("apply", "-y")
    done_line = summary(result.stdout)[1]
    assert done_line.startswith("  done:    ")
    # Listed in completion order, which depends on which job the server finishes first.
    assert set(done_line.removeprefix("  done:    ").split(", ")) == {"job.onchange", "job.always"}
    state = proj.state()["resources"]
    assert state["job.once"]["remote_id"] == first["job.once"]
    assert state["job.once"]["run_count"] == 1
    for address in ("job.onchange", "job.always"):
        assert state[address]["remote_id"] != first[address]
        assert state[address]["run_count"] == 2

    result = proj("apply", "-y")  # unchanged: only `always` runs again
    assert summary(result.stdout)[1] == "  done:    job.always"
    assert proj.state()["resources"]["job.always"]["run_count"] == 3


LONG_JOB = """
version: 1
project: restart
jobs:
  long:
    command: sleep {n}
    timeout_minutes: 10
    run_policy: on_change
    wait: running
"""


@pytest.mark.slow
def test_a_running_job_is_replaced_only_with_allow_restart(
    proj: Project, user: UserSession
) -> None:
    proj.write(LONG_JOB.format(n=40))
    proj("apply", "-y")
    old = proj.remote_id("job.long")

    proj.write(LONG_JOB.format(n=41))
    result = proj("apply", "-y", code=1)
    error = result.stderr.strip()
    assert error.startswith("Error: job.long is running (for ")
    assert "would be cancelled and started again: spec changed (command)" in error
    assert error.endswith("re-run with --allow-restart to replace it, or wait until it finishes")
    assert proj.remote_id("job.long") == old
    assert user.client.jobs.get(old).status == "running"

    result = proj("apply", "-y", "--allow-restart")
    assert "-/+ replace job.long" in result.stdout
    new = proj.remote_id("job.long")
    assert new != old
    assert user.client.jobs.get(old).status == "cancelled"
    assert user.client.jobs.get(new).status == "running"
    proj("destroy", "-y")
    assert user.client.jobs.get(new).status == "cancelled"


def test_parallelism_bounds_the_changes_in_flight_and_events_parse(proj: Project) -> None:
    jobs = "\n".join(f"  j{i}: {{command: 'true', timeout_minutes: 10}}" for i in range(6))
    proj.write(f"version: 1\nproject: par\njobs:\n{jobs}\n")
    result = proj("apply", "-y", "--json", "--parallelism", "2")
    assert result.stderr == ""
    events = parse_events(result.stdout)
    assert events[0]["type"] == "apply_start" and events[0]["parallelism"] == 2
    assert events[-1]["type"] == "apply_done" and events[-1]["exit_code"] == 0
    assert sorted(events[-1]["done"]) == [f"job.j{i}" for i in range(6)]
    in_flight = peak = 0
    for event in events:
        if event["type"] == "change_start":
            in_flight += 1
            peak = max(peak, in_flight)
        elif event["type"] in ("change_done", "change_failed"):
            in_flight -= 1
    assert 1 <= peak <= 2  # the ceiling; reaching it depends on thread timing
    starts = [e for e in events if e["type"] == "change_start"]
    dones = {e["address"]: e for e in events if e["type"] == "change_done"}
    for start in starts:
        done = dones[start["address"]]
        assert done["action"] == "create" and done["remote_id"].startswith("job_")
        assert done["elapsed"] >= 0


def test_without_a_terminal_apply_asks_for_auto_approve(proj: Project, user: UserSession) -> None:
    proj.write("version: 1\nproject: ask\njobs:\n  a: {command: 'true', timeout_minutes: 10}\n")
    result = proj("apply", code=1)
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: apply needs a confirmation and cannot ask for it (stdin is not a terminal); "
        "pass -y/--auto-approve to apply without asking"
    )
    assert live_names(user.client) == ({}, {})


@pytest.mark.parametrize(("answer", "applied"), [("yes", True), ("no", False)])
def test_a_terminal_is_asked_and_only_yes_applies(
    proj: Project, user: UserSession, answer: str, applied: bool
) -> None:
    proj.write("version: 1\nproject: tty\njobs:\n  a: {command: 'true', timeout_minutes: 10}\n")
    leader, follower = os.openpty()
    try:
        os.write(leader, f"{answer}\n".encode())
        result = subprocess.run(
            [sys.executable, "-m", "dumont_plan", "apply"],
            env=proj.env,
            cwd=proj.folder,
            stdin=follower,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert "Do you want to perform these actions? Only 'yes' will be accepted:" in result.stdout
    jobs, _ = live_names(user.client)
    if applied:
        assert result.returncode == 0, result.stderr
        assert jobs == {"tty-a": 1}
    else:
        assert result.returncode == 1
        assert "Error: apply cancelled: nothing was changed" in result.stderr
        assert not jobs


@pytest.mark.slow
def test_a_saved_plan_applies_without_asking_and_refuses_when_stale(
    proj: Project, user: UserSession
) -> None:
    proj.write(LONG_JOB.format(n=40))
    proj("plan", "-out", "first.json")
    result = proj("apply", "first.json")  # no -y, no terminal: a saved plan is not asked
    assert "Apply complete: 1 done" in result.stdout
    job_id = proj.remote_id("job.long")

    proj.write(LONG_JOB.format(n=41))
    proj("plan", "--allow-restart", "-out", "second.json")
    user.client.jobs.cancel(job_id)  # the live object moves after the plan was made
    result = proj("apply", "second.json", code=7)
    assert result.stderr.strip() == (
        "Error: the saved plan is stale: the live state of job.long changed since it was "
        "made; make the plan again: dumont plan -out FILE"
    )
    assert proj.remote_id("job.long") == job_id


@pytest.mark.slow
def test_destroy_respects_prevent_destroy(proj: Project, user: UserSession) -> None:
    proj.write(
        """
        version: 1
        project: keep
        jobs:
          precious:
            command: sleep 30
            timeout_minutes: 10
            lifecycle: {prevent_destroy: true}
        """
    )
    proj("apply", "-y")
    job_id = proj.remote_id("job.precious")
    try:
        result = proj("destroy", "-y", code=1)
        assert "job.precious has lifecycle.prevent_destroy" in result.stderr
        assert user.client.jobs.get(job_id).status != "cancelled"
    finally:
        user.client.jobs.cancel(job_id)


@pytest.mark.slow
def test_ctrl_c_ends_a_long_wait_at_once_and_keeps_the_state(
    proj: Project, user: UserSession
) -> None:
    proj.write(
        """
        version: 1
        project: interrupt
        jobs:
          long: {command: sleep 60, timeout_minutes: 10, wait: completed}
        """
    )
    running = proj.popen("apply", "-y", "--json")
    assert running.stdout is not None
    for line in running.stdout:
        if json.loads(line)["type"] == "wait_progress":
            break
    started = time.monotonic()
    running.send_signal(signal.SIGINT)
    out, err = running.communicate(timeout=45)
    # Well before the 60 s job could end (a tight bound failed on a loaded machine).
    assert time.monotonic() - started < 20
    assert running.returncode == 130
    assert "Interrupted: every change made so far is in the state" in err
    # Not "failed": the wait stopped, the job goes on, in the state it was last seen in.
    stopped = [json.loads(x) for x in out.splitlines() if '"change_failed"' in x]
    assert [(e["address"], e["interrupted"]) for e in stopped] == [("job.long", True)]
    assert stopped[0]["status"] in ("provisioning", "starting", "running")
    assert "goes on on the server" in stopped[0]["error"]
    assert proj.state()["pending"] == []
    job_id = proj.remote_id("job.long")
    assert user.client.jobs.get(job_id).status in ("provisioning", "starting", "running")
    assert "No changes." in proj("apply", "-y").stdout
    user.client.jobs.cancel(job_id)


TARGETS = """
version: 1
project: targets
jobs:
  base: {command: 'true', timeout_minutes: 10}
  child: {command: 'true', timeout_minutes: 10, depends_on: [job.base]}
  other: {command: 'true', timeout_minutes: 10}
"""


@pytest.mark.slow
def test_target_and_exclude_limit_what_apply_touches(proj: Project, user: UserSession) -> None:
    proj.write(TARGETS)
    proj("apply", "-y", "--target", "job.child")
    assert live_names(user.client)[0] == {"targets-base": 1, "targets-child": 1}
    proj("apply", "-y", "--exclude", "job.other")
    assert live_names(user.client)[0] == {"targets-base": 1, "targets-child": 1}
    proj("apply", "-y")
    assert live_names(user.client)[0] == {
        n: 1 for n in ("targets-base", "targets-child", "targets-other")
    }


def test_a_cost_gate_stops_apply_before_any_mutation(proj: Project, user: UserSession) -> None:
    proj.write(TARGETS)
    result = proj("apply", "-y", "--max-cost", "0.01", code=6)
    assert result.stderr.startswith("Error: ")
    assert "Apply" not in result.stdout
    assert live_names(user.client) == ({}, {})
    assert not (proj.folder / ".dumont" / "state.json").exists()


@pytest.mark.slow
def test_a_dependent_of_a_failed_job_stays_blocked_until_it_is_rerun(proj: Project) -> None:
    proj.write(
        """
        version: 1
        project: blocked
        jobs:
          bad: {command: "exit 3", wait: completed, timeout_minutes: 10}
          after: {command: "echo ${job.bad.id}", wait: completed, timeout_minutes: 10}
          later: {command: "echo ${job.after.id}", timeout_minutes: 10}
        """
    )
    proj("apply", "-y", code=5)
    # A plain second apply does not run what waits for the failed job (it would run on a
    # failure's output): the plan says so and how to re-run, the apply is partial.
    plan = proj("plan", "--detailed-exitcode", code=2).stdout
    assert "  = job.after  (blocked)" in plan
    assert (
        "note: waits for job.bad, whose last run ended failed; re-run it with "
        "`dumont apply --replace job.bad`"
    ) in plan
    assert "note: waits for job.after, which is blocked" in plan
    assert "No changes can be made: 2 blocked by a failed run they depend on" in plan
    assert json.loads(proj("plan", "-o", "json").stdout)["blocked"].keys() == {
        "job.after",
        "job.later",
    }
    second = proj("apply", "-y", code=3)
    assert "skipped: job.after (blocked: waits for job.bad" in second.stdout
    assert proj.state()["resources"].keys() == {"job.bad"}
    # Fixed and re-run on purpose: everything runs, and the plan settles.
    spec = proj.folder / "dumont.yaml"
    spec.write_text(spec.read_text().replace("exit 3", "exit 0"))
    proj("apply", "-y", "--replace", "job.bad")
    proj("plan", "--detailed-exitcode")
