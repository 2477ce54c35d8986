"""Invariant 4: a secret's value never appears in output, JSON, saved plans, the state or logs.

A spec passes `${secret.HF_TOKEN}` to its jobs, with HF_TOKEN set to a unique marker. After
plan, `plan -out`, show, apply of the saved plan with `--json --logs`, a failing apply, and
validation errors in a spec that uses the secret too, the marker is absent from every stdout
and stderr, every file under `.dumont/`, the saved plan and the control plane's data dir
(database, server log, job logs). The job itself did get it: it writes the value's sha256 as
an output, which matches.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.apply.applykit import Project, parse_events, tree_text
from tests.support import LocalServer, new_user

SPEC = """
version: 1
project: secrets
jobs:
  use:
    command: >-
      mkdir -p output && printf %s "$HF_TOKEN" | sha256sum | cut -d' ' -f1 > output/hash &&
      echo "the token is $HF_TOKEN"
    hf_token: ${secret.HF_TOKEN}
    output_paths: [/workspace/output]
    timeout_minutes: 10
    wait: completed
"""
FAILING = """
  leak:
    command: echo "leaking $HF_TOKEN" && exit 1
    hf_token: ${secret.HF_TOKEN}
    timeout_minutes: 10
    wait: completed
"""
INVALID = """
version: 1
project: secrets
jobs:
  bad:
    command: echo ${secret.HF_TOKEN}
    hf_token: ${secret.HF_TOKEN}
    timeout_minutes: 5
"""


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[LocalServer]:
    server = LocalServer(tmp_path / "plane").start()
    yield server
    server.stop()


@pytest.mark.slow
def test_a_secret_never_leaks(plane: LocalServer, tmp_path: Path) -> None:
    marker = f"hf_MARKER_{uuid.uuid4().hex}"
    user = new_user(plane.url)
    home = tmp_path / "home"
    home.mkdir()
    proj = Project(tmp_path / "work", home, user.url, user.token, HF_TOKEN=marker)
    proj.write(SPEC)
    seen: list[str] = []

    def run(*args: str, code: int = 0) -> str:
        result = proj(*args, code=code)
        seen.extend([result.stdout, result.stderr])
        return result.stdout

    run("plan")
    run("plan", "-out", "saved.json")
    run("show", "saved.json")
    run("show", "saved.json", "--output", "json")
    events = parse_events(run("apply", "saved.json", "--json", "--logs"))
    assert events[-1]["exit_code"] == 0
    logged = [e["line"] for e in events if e["type"] == "log"]
    assert any(line.startswith("the token is ") for line in logged), logged
    run("show")
    run("show", "--output", "json")
    run("state", "list", "--output", "json")

    proj.write(SPEC + FAILING)
    run("apply", "-y", "--logs", code=5)
    run("apply", "-y", "--json", "--logs", "--replace", "job.leak", code=5)

    broken = proj.folder / "broken"
    broken.mkdir()
    (broken / "dumont.yaml").write_text(INVALID)
    for command in ("validate", "plan", "apply"):
        run(command, "-f", "broken", *(["-y"] if command == "apply" else []), code=1)

    job_id = proj.remote_id("job.use")
    hashed = user.client.jobs.download_output(job_id, "output/hash").decode().strip()
    assert hashed == hashlib.sha256(marker.encode()).hexdigest()  # the job did get it
    state = proj.state()["resources"]["job.use"]
    assert state["applied_spec"]["hf_token"].startswith("sha256:")

    for text in seen:
        assert marker not in text
    assert marker not in tree_text(proj.folder / ".dumont")
    assert marker not in (proj.folder / "saved.json").read_text()
    assert marker not in tree_text(plane.data_dir)
