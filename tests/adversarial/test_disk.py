"""Issue 10, item 1: `disk_size` bounds a job's whole workspace, not only each file.

`disk_size: 10` once let a job write 1 GiB over several files (the file-size rlimit bounds one
file). The server here counts 1 MB per GB of `disk_size` (`DUMONT_SERVER_DISK_GB_BYTES`), so the
minimum of 10 GB means 10 MB.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from dumont_plan.server.provider.sandbox import tagged_pids
from tests.server.jobfixtures import create_job, logs, private_server, wait_for, wait_until
from tests.support import LocalServer, UserSession, new_user

MB = 1024 * 1024


def writes(files: int) -> str:
    """Shell that writes `files` files of 1 MiB, says so, then waits a minute."""
    return (
        f"for i in $(seq {files}); do head -c {MB} /dev/urandom > f$i; done; "
        "echo wrote; sleep 60 & wait"
    )


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    env = {"DUMONT_SERVER_DISK_GB_BYTES": str(10**6)}
    with private_server(tmp_path_factory.mktemp("disk"), env) as server:
        yield server


@pytest.fixture
def owner(small_disk: LocalServer) -> UserSession:
    return new_user(small_disk.url)


def test_a_job_that_fills_its_workspace_past_disk_size_fails_and_is_not_retried(
    owner: UserSession,
) -> None:
    started = time.monotonic()
    job = create_job(owner, command=writes(30), disk_size=10, max_retries=2, timeout_minutes=10)
    job_id = str(job["id"])

    final = wait_for(owner, job_id, {"completed", "failed"}, timeout=50)
    elapsed = time.monotonic() - started
    text = logs(owner, job_id)
    wait_until(lambda: not tagged_pids(job_id), timeout=10, what="the job's processes to end")

    assert final["status"] == "failed", final
    message = str(final["error_message"])
    assert message.startswith("the workspace used "), message
    assert message.endswith("GB, more than disk_size 10 GB; raise disk_size"), message
    used = float(message.split()[3])
    assert 10 < used <= 32, message  # 1 MiB files: 10.5 GB of 1 MB each, up to 31.5
    assert elapsed < 45, elapsed  # ended by the limit, not by its own `sleep 60`
    assert "retrying" not in text and "attempt 2" not in text, text
    assert "raise disk_size" in text, text


def test_a_job_within_disk_size_completes(owner: UserSession) -> None:
    job = create_job(owner, command=writes(5).replace("sleep 60", "sleep 2"), disk_size=10)

    final = wait_for(owner, str(job["id"]), {"completed", "failed"}, timeout=50)

    assert final["status"] == "completed", (final, logs(owner, str(job["id"])))


def test_the_server_reports_the_workspace_disk_limit(small_disk: LocalServer) -> None:
    capabilities = httpx.get(small_disk.url + "/health").json()["capabilities"]
    assert "disk-limit.workspace" in capabilities


def test_the_limit_counts_files_together_not_each(owner: UserSession) -> None:
    # Each file (1 MiB) is far under the per-file limit (10 MB): only their total is over it.
    job = create_job(owner, command=writes(12).replace("sleep 60", "sleep 5"), disk_size=10)
    final = wait_for(owner, str(job["id"]), {"completed", "failed"}, timeout=50)
    assert final["status"] == "failed", final
    assert "more than disk_size 10 GB" in str(final["error_message"]), final
