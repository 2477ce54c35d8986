"""`dumont job logs --follow` ends when the job finishes, whatever way it ended."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from tests.support import UserSession

Cli = Callable[..., subprocess.CompletedProcess[str]]


def test_follow_stops_when_the_job_fails(cli: Cli, user: UserSession) -> None:
    job_id = user.client.jobs.create(name="fails", command="echo before-fail; exit 3").id
    result = cli("job", "logs", job_id, "--follow", "--poll", "0.2", timeout=30)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "before-fail" in result.stdout.splitlines()
    assert "failed" in result.stderr
