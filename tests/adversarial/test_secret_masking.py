"""Secret values never reach the control plane's disk, logs or `ps` (issue 10, item 5).

As the client sends them (`dumont apply` resolves `${secret.NAME}` into the request and names
the values in the additive `secrets` map), against a real server over loopback: a value used
in `command` and `setup_script` is masked in the job's log (API and `dumont job logs`) and is in
no file of the data dir (spec.json, run.sh, job.log, database, server log), while the job still
gets it; the credentials of a git URL are in no argv while git clones, and in no file either
(.git/config, spec.json, the database), while the clone still authenticates; a value in any
other field the runner uses (here a `pip_packages` URL with credentials) is stored as `***` and
run from the environment, and a value in a field where it has no use (`name`) is a 422.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dumont_plan.server.provider.jobs import SECRETS_LOST
from tests.server.githttp import PrivateGitServer
from tests.server.jobfixtures import (
    GATE,
    WheelServer,
    all_files_text,
    build_wheel,
    create_job,
    get_job,
    job_dir,
    logs,
    make_git_repo,
    open_gate,
    wait_for,
)
from tests.support import LocalServer, UserSession, cli_env, new_user, run_cli


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[LocalServer]:
    """A server of its own: every file of its data dir is searched for the values."""
    srv = LocalServer(tmp_path / "plane").start()
    yield srv
    srv.stop()


def test_a_secret_in_command_and_setup_script_is_masked_and_never_on_disk(
    plane: LocalServer, tmp_path: Path
) -> None:
    user = new_user(plane.url)
    value = f"sk-MARKER-{uuid.uuid4().hex}"
    job = create_job(
        user,
        name="uses-a-secret",
        command=(
            f'echo "command has {value}"; mkdir -p output; '
            'printf %s "$API_KEY" | sha256sum | cut -d" " -f1 > output/hash'
        ),
        setup_script=f'echo "setup has {value}"',
        secrets={"API_KEY": value},
        output_paths=["/workspace/output"],
        auto_destroy=False,  # run.sh and the workspace stay, to be searched too
        timeout_minutes=10,
    )
    done = wait_for(user, job["id"], {"completed", "failed"})
    assert done["status"] == "completed", logs(user, job["id"])
    text = logs(user, job["id"])
    assert "command has ***" in text and "setup has ***" in text, text
    assert value not in text
    # The job had the value: by name in its environment (and inline in its command).
    hashed = user.client.jobs.download_output(job["id"], "output/hash").decode().strip()
    assert hashed == hashlib.sha256(value.encode()).hexdigest()
    home = tmp_path / "home"
    home.mkdir()
    cli = run_cli(["job", "logs", job["id"]], cli_env(home, plane.url, user.token))
    assert cli.returncode == 0, cli.stderr
    assert "command has ***" in cli.stdout and value not in cli.stdout + cli.stderr
    assert value not in all_files_text(plane.data_dir)


def test_a_secret_in_pip_packages_is_stored_masked_and_the_job_gets_the_real_url(
    plane: LocalServer, tmp_path: Path
) -> None:
    user = new_user(plane.url)
    value = f"pypi-MARKER{uuid.uuid4().hex}"
    wheel = build_wheel(tmp_path / "wheels")
    server = WheelServer(wheel, "alice", value)
    try:
        url = f"http://alice:{value}@127.0.0.1:{server.port}/{wheel.name}"
        job = create_job(
            user,
            name="private-wheel",
            pip_packages=[f"dumont_tinypkg @ {url}"],
            command='python -c "import dumont_tinypkg; print(dumont_tinypkg.VALUE)"',
            secrets={"PYPI_TOKEN": value},
            auto_destroy=False,  # run.sh and the installed packages stay, to be searched
            timeout_minutes=10,
        )
        done = wait_for(user, job["id"], {"completed", "failed"})
    finally:
        server.close()
    text = logs(user, job["id"])
    assert done["status"] == "completed", text
    assert server.served > 0  # pip had the real URL, credentials included
    assert text.endswith("tiny-ok\n"), text
    assert value not in text
    spec = (job_dir(plane, job["id"]) / "spec.json").read_text(encoding="utf-8")
    assert f"http://alice:***@127.0.0.1:{server.port}/" in spec
    script = (job_dir(plane, job["id"]) / "run.sh").read_text(encoding="utf-8")
    assert 'eval "$DUMONT_JOB_LINE_' in script
    assert value not in all_files_text(plane.data_dir)


def test_a_secret_where_it_has_no_use_is_refused_naming_the_field(plane: LocalServer) -> None:
    user = new_user(plane.url)
    value = f"sk-MARKER-{uuid.uuid4().hex}"
    for field, sent in (
        ("name", f"job-{value}"),
        ("image", f"registry.example/{value}:1"),
        ("output_paths", [f"/workspace/{value}"]),
    ):
        body = {"command": "true", field: sent, "secrets": {"API_KEY": value}}
        with user.http() as http:
            answer = http.post("/api/v1/jobs/", json=body)
        assert answer.status_code == 422, (field, answer.text)
        assert f"a secret may not be used in `{field}`" in answer.text
        assert value not in answer.text
    with user.http() as http:
        assert http.get("/api/v1/jobs/").json()["total"] == 0
    assert value not in all_files_text(plane.data_dir)


def test_secret_names_are_checked(plane: LocalServer) -> None:
    user = new_user(plane.url)
    for name in ("DUMONT_CONTROL_FD", "1X", "A-B", ""):
        with user.http() as http:
            answer = http.post(
                "/api/v1/jobs/", json={"command": "true", "secrets": {name: "some-value"}}
            )
        assert answer.status_code == 422, (name, answer.text)
        assert "some-value" not in answer.text


def test_git_credentials_are_in_no_argv_git_config_or_file(
    plane: LocalServer, tmp_path: Path
) -> None:
    user = new_user(plane.url)
    token = f"ghp_MARKER{uuid.uuid4().hex}"
    repo = Path(make_git_repo(tmp_path / "origin").removeprefix("file://"))
    with PrivateGitServer(repo, tmp_path / "served.git", "alice", token) as git:
        job = create_job(
            user,
            name="private-clone",
            source="git",
            git_url=git.url(f"alice:{token}@"),
            command="git config --get remote.origin.url; bash run.sh",
            auto_destroy=False,  # .git/config and run.sh stay, to be searched
            timeout_minutes=10,
        )
        done = wait_for(user, job["id"], {"completed", "failed"})
        text = logs(user, job["id"])
        assert done["status"] == "completed", text
        assert git.authorised > 0  # the clone did authenticate, with the right credentials
        assert git.token_in_argv == [], "the token was in a process's argv while cloning"
    assert "from git main: repo" in text
    assert f"{git.url()}\n" in text  # the clone's remote has no credentials
    assert token not in text
    assert token not in all_files_text(plane.data_dir)


@pytest.mark.slow
def test_a_queued_job_whose_secrets_a_restart_forgot_fails_instead_of_running_masked(
    tmp_path: Path,
) -> None:
    # One running job at a time: the second waits in `pending` while the server restarts.
    server = LocalServer(tmp_path / "plane", extra_args=["--max-running-jobs", "1"]).start()
    try:
        user = new_user(server.url)
        first = create_job(user, command=GATE, timeout_minutes=10)
        wait_for(user, first["id"], "running")
        value = f"sk-MARKER-{uuid.uuid4().hex}"
        queued = create_job(
            user,
            command=f'echo "would use {value}"',
            secrets={"API_KEY": value},
            timeout_minutes=10,
        )
        assert get_job(user, queued["id"])["status"] == "pending"
        server.kill()  # the runner of the first job lives on; the secret is gone with memory
        server = LocalServer(server.data_dir, extra_args=["--max-running-jobs", "1"]).start()
        user = UserSession(user.email, user.token, user.client, server.url)
        open_gate(server, first["id"])
        wait_for(user, first["id"], "completed")
        failed = wait_for(user, queued["id"], "failed")
        assert failed["error_message"] == SECRETS_LOST
        assert "would use ***" not in logs(user, queued["id"])  # it never ran with *** in place
    finally:
        server.stop()
    assert value not in all_files_text(server.data_dir)
