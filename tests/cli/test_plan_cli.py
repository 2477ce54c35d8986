"""`dumont plan/show/explain/refresh/import/state/force-unlock`, run as a user would."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, LocalServer, UserSession, cli_env, run_cli

MARKER = "dmt_SECRET_MARKER_7c1d"


class Runner:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd

    def __call__(self, *args: str, code: int | None = 0) -> subprocess.CompletedProcess[str]:
        result = run_cli(list(args), self.env, cwd=self.cwd)
        assert "Traceback" not in result.stderr, result.stderr
        if code is not None:
            assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
        return result


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    for name in ("mixed", "jobs"):
        shutil.copy(REPO / "examples" / name / "dumont.yaml", folder / f"{name}.yaml")
    return folder


@pytest.fixture
def dumont(home: Path, user: UserSession, work: Path) -> Runner:
    env = cli_env(home, user.url, user.token)
    env["DEMO_TOKEN"] = MARKER
    return Runner(env, work)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_plan_shows_creates_with_prices_and_a_summary(dumont: Runner) -> None:
    out = dumont("plan", "-f", "mixed.yaml").stdout
    lines = out.splitlines()
    assert lines[0] == "dumont will perform these actions (project mixed-demo):"
    creates = [line for line in lines if line.startswith("  + create ")]
    assert [line.split()[2] for line in creates] == [
        "instance.devbox",
        "job.prepare",
        "job.report",
    ]
    for line in creates:
        assert "$" in line and "/h" in line, line
    assert "worst case $" in creates[1]
    assert lines[-1].startswith("Plan: 3 to create, 0 to run, 0 to change, 0 to destroy. Cost: +$")
    assert MARKER not in out


def test_detailed_exitcode_is_2_with_changes(dumont: Runner) -> None:
    dumont("plan", "-f", "jobs.yaml", "--detailed-exitcode", code=2)


def test_plan_json_parses(dumont: Runner) -> None:
    data = json.loads(dumont("plan", "-f", "mixed.yaml", "--output", "json").stdout)
    assert data["format_version"] == 1
    assert data["project"] == "mixed-demo"
    assert data["has_changes"] is True
    assert {c["address"]: c["action"] for c in data["changes"]} == {
        "instance.devbox": "create",
        "job.prepare": "create",
        "job.report": "create",
    }
    report = next(c for c in data["changes"] if c["address"] == "job.report")
    assert report["depends_on"] == ["instance.devbox", "job.prepare"]
    assert MARKER not in json.dumps(data)


@pytest.mark.slow
def test_saved_plan_has_no_secret_and_show_reads_it(dumont: Runner, work: Path) -> None:
    result = dumont("plan", "-f", "mixed.yaml", "-out", "plan.json")
    assert "Saved the plan to plan.json" in result.stdout
    text = (work / "plan.json").read_text()
    assert MARKER not in text
    data = json.loads(text)
    assert data["kind"] == "dumont-plan"
    assert data["spec_digest"].startswith("sha256:")
    assert all(c["observed_fingerprint"] for c in data["changes"])
    shown = dumont("show", "plan.json").stdout
    assert "  + create job.report" in shown
    assert (
        json.loads(dumont("show", "plan.json", "-o", "json").stdout)["changes"] == data["changes"]
    )
    assert not (work / ".dumont" / "state.json").exists()  # plan never writes the state


@pytest.mark.slow
def test_explain_prints_the_field_table(dumont: Runner) -> None:
    out = dumont("explain", "job").stdout
    assert "job (jobs:)" in out
    row = next(line for line in out.splitlines() if line.split()[:1] == ["hf_token"])
    assert "secret" in row and "(sensitive)" in row
    data = json.loads(dumont("explain", "instances", "-o", "json").stdout)
    assert data["fields"]["gpu_name"]["class"] == "replace"
    assert data["fields"]["state"]["class"] == "updatable"
    serverless = dumont("explain", "serverless").stdout
    assert "serverless (serverless:)" in serverless
    row = next(line for line in serverless.splitlines() if line.split()[:1] == ["instance"])
    assert "replace" in row
    spot = dumont("explain", "spot_deployments").stdout
    assert "spot_deployment (spot_deployments:)" in spot
    row = next(line for line in spot.splitlines() if line.split()[:1] == ["instance_id"])
    assert "output" in row and "changes at each failover" in row
    finetune = json.loads(dumont("explain", "finetunes", "-o", "json").stdout)
    assert finetune["fields"]["dataset_sha256"]["class"] == "replace"
    assert finetune["fields"]["max_hours"]["class"] == "updatable"
    endpoint = json.loads(dumont("explain", "serverless_endpoints", "-o", "json").stdout)
    assert endpoint["fields"]["command"]["class"] == "replace"
    assert endpoint["fields"]["max_instances"]["class"] == "updatable"
    assert endpoint["fields"]["url"]["class"] == "output"
    assert error_line(dumont("explain", "gpu", code=1)) == (
        "Error: unknown kind 'gpu'; use one of: finetune, instance, job, serverless, "
        "serverless_endpoint, spot_deployment, spot_template"
    )


def test_max_cost_is_a_policy_failure(dumont: Runner) -> None:
    result = dumont("plan", "-f", "mixed.yaml", "--max-cost", "0.01", code=6)
    assert "Plan: 3 to create" in result.stdout
    assert error_line(result).startswith("Error: the plan adds $")


def test_a_missing_secret_is_one_clear_error(dumont: Runner) -> None:
    del dumont.env["DEMO_TOKEN"]
    line = error_line(dumont("plan", "-f", "mixed.yaml", code=1))
    # Located like any spec problem: the file and line of the resource that uses it.
    assert re.match(
        r"Error: mixed\.yaml:\d+ job\.report: secret DEMO_TOKEN is not set; export DEMO_TOKEN=",
        line,
    ), line


def test_a_corrupt_state_is_one_clear_error(dumont: Runner, work: Path) -> None:
    (work / ".dumont").mkdir()
    (work / ".dumont" / "state.json").write_text("{not json")
    line = error_line(dumont("plan", "-f", "jobs.yaml", code=1))
    assert "is not valid dumont state (line 1 column 2" in line
    assert (work / ".dumont" / "state.json").read_text() == "{not json"


@pytest.mark.slow
def test_import_then_plan_state_refresh(
    dumont: Runner, user: UserSession, work: Path, server: LocalServer
) -> None:
    job = user.client.jobs.create(name="anything", command="true").raw
    dumont("state", "list", "-f", "jobs.yaml")
    result = dumont("import", "job.hello", str(job["id"]), "-f", "jobs.yaml")
    assert result.stdout.startswith(f"Imported job {job['id']} (")
    listed = json.loads(dumont("state", "list", "-f", "jobs.yaml", "-o", "json").stdout)
    assert listed["resources"]["job.hello"]["remote_id"] == job["id"]
    assert MARKER not in (work / ".dumont" / "state.json").read_text()
    # Imported as it is in the spec: only job.nap is left to create.
    before = server.mutating_requests()
    plan = json.loads(dumont("plan", "-f", "jobs.yaml", "-o", "json").stdout)
    assert {c["address"]: c["action"] for c in plan["changes"]}["job.nap"] == "create"
    assert {c["address"]: c["action"] for c in plan["changes"]}["job.hello"] == "noop"
    assert server.mutating_requests() == before  # plan mutates nothing
    again = dumont("import", "job.hello", str(job["id"]), "-f", "jobs.yaml", code=1)
    assert "it is already managed" in error_line(again)
    missing = dumont("import", "job.nap", "job_00000000", "-f", "jobs.yaml", code=1)
    assert error_line(missing).startswith("Error: import job.nap: no job job_00000000 on the")
    shown = dumont("show", "-f", "jobs.yaml").stdout
    row = next(line for line in shown.splitlines() if "job.hello" in line)
    assert str(job["id"]) in row and "jobs-demo-hello" not in row  # imported: its own name
    refreshed = dumont("refresh", "-f", "jobs.yaml", "-o", "json").stdout
    assert json.loads(refreshed)["resources"]["job.hello"]["live_status"] in (
        "pending",
        "provisioning",
        "starting",
        "running",
        "completed",
    )
    dumont("state", "mv", "job.hello", "job.hi", "-f", "jobs.yaml")
    assert "Removed job.hi (job " in dumont("state", "rm", "job.hi", "-f", "jobs.yaml").stdout
    gone = dumont("state", "rm", "job.hi", "-f", "jobs.yaml", code=1)
    assert "job.hi: it is not in the state" in error_line(gone)


HOLD = """
import sys, time
from pathlib import Path
from dumont_plan.state.ledger import Ledger
with Ledger.locked(Path(sys.argv[1]), None, command="dumont apply"):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.mark.slow
def test_a_locked_state_names_its_holder_and_force_unlock(dumont: Runner, work: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, str(work / ".dumont" / "state.json")],
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            line = error_line(dumont("state", "rm", "job.x", "-f", "jobs.yaml", code=1))
            assert line.startswith(f"Error: state is locked by pid {holder.pid} on host ")
            assert line.endswith(
                "(dumont apply); if that process is gone, run `dumont force-unlock`"
            )
            held = dumont("force-unlock", "-f", "jobs.yaml", code=1)
            assert "still holds it" in error_line(held)
        finally:
            holder.kill()
    assert dumont("force-unlock", "-f", "jobs.yaml").stdout.startswith(
        f"Removed a stale lock left by pid {holder.pid}"
    )
    assert dumont("force-unlock", "-f", "jobs.yaml").stdout == "The state is not locked.\n"
