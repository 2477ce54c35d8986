"""Item 1 in apply: a lost create answer makes no second job, whether or not the server
honours Idempotency-Key (the real platform does not: the next plan adopts the job by name)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support import LocalServer, UserSession, cli_env, run_cli

SPEC = """project: lost
jobs:
  once:
    command: "true"
    gpu_type: RTX 4090
"""


def test_a_lost_create_answer_makes_no_second_job(
    profile_server: LocalServer, profile_user: UserSession, tmp_path: Path
) -> None:
    (tmp_path / "dumont.yaml").write_text(SPEC)
    env = cli_env(tmp_path / "home", profile_user.url, profile_user.token)
    drop = {"count": 1, "status": 0, "method": "POST", "path": "/api/v1/jobs/"}
    assert httpx.post(profile_server.url + "/api/v1/_local/faults", json=drop).status_code == 200
    first = run_cli(["apply", "--auto-approve"], env, cwd=tmp_path)
    assert first.returncode != 0, first  # the answer was lost: the apply cannot know the id
    second = run_cli(["apply", "--auto-approve"], env, cwd=tmp_path)
    assert second.returncode == 0, second
    with profile_user.http() as http:
        jobs = http.get("/api/v1/jobs/", params={"limit": 100}).json()["jobs"]
    assert [j["name"] for j in jobs].count("lost-once") == 1, jobs
