"""A job's `schedule:` and `num_nodes` against both profiles: the local control plane honours
them; a server without the extensions (the real platform lists no capabilities) would ignore
them silently, so apply refuses before sending anything, naming the capability and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.apply.applykit import Project
from tests.support import UserSession

SPEC = "version: 1\nproject: caps\njobs:\n  a:\n    command: 'true'\n    {line}\n"


@pytest.mark.parametrize(
    ("line", "capability"),
    [
        ("schedule: {cron: '0 2 * * *'}", "jobs.schedules"),
        ("schedule: {at: '2099-01-01T02:00Z'}", "jobs.start-at"),
    ],
)
def test_a_schedule_needs_the_servers_extension(
    profile_user: UserSession, real_platform: bool, tmp_path: Path, line: str, capability: str
) -> None:
    (tmp_path / "home").mkdir()
    proj = Project(tmp_path / "work", tmp_path / "home", profile_user.url, profile_user.token)
    proj.write(SPEC.format(line=line))
    result = proj("apply", "-y", code=None)
    if real_platform:
        assert result.returncode == 3, result.stdout  # a change failed, nothing was sent
        assert f"no `{capability}` in /health" in result.stdout + result.stderr
        assert profile_user.client.jobs.list_all() == []
    else:
        assert result.returncode == 0, (result.stdout, result.stderr)
        proj("plan", "--detailed-exitcode")
        proj("destroy", "-y")
