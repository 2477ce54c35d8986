"""Invariant 4: a secret's value never appears in output, JSON, saved plans, the state or logs.

A spec passes `${secret.HF_TOKEN}` to its jobs, with HF_TOKEN set to a unique marker: as
`hf_token`, inside a `command` and a `setup_script`, and `${secret.GIT_TOKEN}` inside the
credentials of a private git URL (served over HTTP with Basic auth, so the clone needs them) and
`${secret.PIP_TOKEN}` in those of a `pip_packages` wheel URL (served the same way). After
plan, `plan -out`, show, apply of the saved plan with `--json --logs`, a failing apply, and
validation errors in a spec that uses the secret too, the marker is absent from every stdout
and stderr, every file under `.dumont/`, the saved plan and the control plane's data dir
(database, server log, job logs, spec.json and run.sh, kept workspaces and their .git/config).
The job itself did get it: it writes the value's sha256 as an output, which matches; the
private repository was cloned and the private wheel installed.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.apply.applykit import Project, parse_events, tree_text
from tests.server.githttp import PrivateGitServer
from tests.server.jobfixtures import WheelServer, build_wheel, make_git_repo
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
  inline:
    command: echo "inline ${secret.HF_TOKEN}"
    setup_script: echo "setup ${secret.HF_TOKEN}"
    auto_destroy: false
    timeout_minutes: 10
    wait: completed
  private:
    source: git
    git_url: http://alice:${secret.GIT_TOKEN}@GIT_HOST/repo.git
    command: git config --get remote.origin.url && bash run.sh
    auto_destroy: false
    timeout_minutes: 10
    wait: completed
  wheel:
    pip_packages: ["dumont_tinypkg @ http://alice:${secret.PIP_TOKEN}@WHEEL_HOST/WHEEL_FILE"]
    command: python -c "import dumont_tinypkg as p; print('wheel', p.VALUE)"
    auto_destroy: false
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


@pytest.fixture
def git_token() -> str:
    return f"ghp_MARKER_{uuid.uuid4().hex}"


@pytest.fixture
def private_git(tmp_path: Path, git_token: str) -> Iterator[PrivateGitServer]:
    repo = Path(make_git_repo(tmp_path / "origin").removeprefix("file://"))
    with PrivateGitServer(repo, tmp_path / "served.git", "alice", git_token) as git:
        yield git


@pytest.fixture
def pip_token() -> str:
    return f"pypi_MARKER_{uuid.uuid4().hex}"


@pytest.fixture
def private_wheel(tmp_path: Path, pip_token: str) -> Iterator[WheelServer]:
    server = WheelServer(build_wheel(tmp_path / "wheels"), "alice", pip_token)
    yield server
    server.close()


@pytest.mark.slow
def test_a_secret_never_leaks(
    plane: LocalServer,
    tmp_path: Path,
    private_git: PrivateGitServer,
    private_wheel: WheelServer,
    git_token: str,
    pip_token: str,
) -> None:
    marker = f"hf_MARKER_{uuid.uuid4().hex}"
    user = new_user(plane.url)
    home = tmp_path / "home"
    home.mkdir()
    proj = Project(
        tmp_path / "work",
        home,
        user.url,
        user.token,
        HF_TOKEN=marker,
        GIT_TOKEN=git_token,
        PIP_TOKEN=pip_token,
    )
    spec = SPEC.replace("GIT_HOST", private_git.host)
    spec = spec.replace("WHEEL_HOST", f"127.0.0.1:{private_wheel.port}")
    spec = spec.replace("WHEEL_FILE", private_wheel.wheel.name)
    proj.write(spec)
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
    assert "inline ***" in logged and "setup ***" in logged, logged
    assert f"{private_git.url()}" in logged and "from git main: repo" in logged, logged
    assert private_git.authorised > 0 and private_git.token_in_argv == []
    assert "wheel tiny-ok" in logged and private_wheel.served > 0, logged
    run("show")
    run("show", "--output", "json")
    run("state", "list", "--output", "json")

    proj.write(spec + FAILING)
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

    for value in (marker, git_token, pip_token):
        for text in seen:
            assert value not in text
        assert value not in tree_text(proj.folder / ".dumont")
        assert value not in (proj.folder / "saved.json").read_text()
        assert value not in tree_text(plane.data_dir)
