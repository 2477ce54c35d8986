"""Items 1 and 6: options a server ignores, against both profiles."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.support import UserSession, cli_env, run_cli


def _names(user: UserSession, name: str) -> list[str]:
    with user.http() as http:
        jobs = http.get("/api/v1/jobs/", params={"limit": 100}).json()["jobs"]
    return [j["id"] for j in jobs if j["name"] == name]


def test_idempotency_key_creates_one_job_on_either_server(
    profile_user: UserSession, real_platform: bool, tmp_path: Path
) -> None:
    """The real platform ignores the key: the second create finds the job by name instead."""
    env = cli_env(tmp_path, profile_user.url, profile_user.token)
    key = uuid.uuid4().hex
    args = ["job", "create", "dedup", "--command", "true", "--idempotency-key", key]
    first = run_cli([*args, "--output", "json"], env)
    second = run_cli([*args, "--output", "json"], env)
    assert first.returncode == 0 and second.returncode == 0, (first, second)
    assert len(_names(profile_user, "dedup")) == 1
    warned = "warning: --idempotency-key" in second.stderr
    assert warned is real_platform, second.stderr


def test_idempotency_key_help_names_the_capability() -> None:
    result = run_cli(["job", "create", "--help"], cli_env(Path("/nonexistent")))
    assert "idempotency-key` capability" in " ".join(result.stdout.split())


def test_ignored_options_are_warned_once(
    profile_user: UserSession, real_platform: bool, tmp_path: Path
) -> None:
    env = cli_env(tmp_path, profile_user.url, profile_user.token)
    created = run_cli(
        [
            "job",
            "create",
            "ignored",
            "--command",
            "true",
            "--no-auto-destroy",
            "--max-retries",
            "1",
            "--timeout",
            "10",
            "--output",
            "json",
        ],
        env,
    )
    assert created.returncode == 0, created
    options = ["--no-auto-destroy", "--max-retries", "--timeout"]
    for option in options:
        assert (created.stderr.count(f"warning: {option}:") == 1) is real_platform, created.stderr
    [job_id] = _names(profile_user, "ignored")
    logs = run_cli(["job", "logs", job_id, "--tail", "5"], env)
    assert logs.returncode == 0, logs
    assert ("warning: --tail:" in logs.stderr) is real_platform, logs.stderr
    logout = run_cli(["auth", "logout"], env)
    assert logout.returncode == 0, logout
    assert ("warning: logout:" in logout.stderr) is real_platform, logout.stderr
