"""Idempotency keys survive a SIGKILL of the control plane (issue 10, item 8).

Several clients create jobs with an `Idempotency-Key` each while the control plane is killed
with SIGKILL; after a restart every key that was sent is retried. The key is committed in the
transaction that inserts the job, so no retry ever makes a second one: each key's job name
appears exactly once. (Instances record their key the same way, in `create_instance`.)
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import LocalServer, UserSession, new_user

ROUNDS = 3
THREADS = 6


class Plane:
    def __init__(self, data_dir: Path) -> None:
        self.server = LocalServer(data_dir).start()
        self.port = self.server.url.rsplit(":", 1)[1]

    def restart(self) -> None:
        self.server = LocalServer(self.server.data_dir, extra_args=["--port", self.port]).start()


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[Plane]:
    running = Plane(tmp_path / "plane")
    yield running
    running.server.stop()


def send(user: UserSession, key: str, path: str, body: dict[str, Any]) -> int | None:
    headers = {"Authorization": f"Bearer {user.token}", "Idempotency-Key": key}
    try:
        return httpx.post(user.url + path, json=body, headers=headers, timeout=30).status_code
    except httpx.HTTPError:
        return None  # the server died under the request


def job_body(key: str) -> dict[str, Any]:
    return {"name": f"idem-{key}", "command": "true", "timeout_minutes": 10}


def all_names(user: UserSession) -> Counter[str]:
    names: Counter[str] = Counter()
    with user.http() as http:
        offset = 0
        while True:
            page = http.get("/api/v1/jobs/", params={"limit": 100, "offset": offset}).json()
            names.update(job["name"] for job in page["jobs"])
            offset += len(page["jobs"])
            if not page["jobs"]:
                return names


def hammer(user: UserSession, stop: threading.Event, sent: list[str]) -> None:
    """Keyed creates until `stop` or until the server dies under one."""
    while not stop.is_set():
        key = uuid.uuid4().hex[:12]
        sent.append(key)
        if send(user, key, "/api/v1/jobs/", job_body(key)) is None:
            return


@pytest.mark.slow
def test_a_key_retried_after_a_kill_never_duplicates_a_job(plane: Plane) -> None:
    user = new_user(plane.server.url)
    sent: list[str] = []
    for round_ in range(ROUNDS):
        stop = threading.Event()
        threads = [threading.Thread(target=hammer, args=(user, stop, sent)) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        time.sleep(0.8 + 0.3 * round_)
        plane.server.kill()
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        plane.restart()
        user = UserSession(user.email, user.token, user.client, plane.server.url)
        for key in sent:
            assert send(user, key, "/api/v1/jobs/", job_body(key)) in (200, 201)
    names = all_names(user)
    duplicates = {name: n for name, n in names.items() if n > 1}
    assert not duplicates, f"retried keys made duplicates: {duplicates}"
    assert set(names) == {f"idem-{key}" for key in sent}
