"""Jobs that need the control plane's environment: a tiny Hugging Face hub (HF_ENDPOINT), a local
wheelhouse (PIP_NO_INDEX + PIP_FIND_LINKS) and a fast clock for timeouts
(DUMONT_SERVER_TIME_SCALE). One private server for the module, started with that environment."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from dumont_plan.server.provider.sandbox import tagged_pids
from tests.server.jobfixtures import (
    JOBS,
    FakeHub,
    all_files_text,
    build_wheel,
    create_job,
    group_alive,
    job_dir,
    logs,
    make_git_repo,
    private_server,
    runner_state,
    wait_for,
    wait_until,
)
from tests.support import LocalServer, UserSession, new_user

HF_REPO = "tiny-org/tiny-model"
HF_TOKEN = "hf_marker_3c1f0e9a7d5b"
TIME_SCALE = 300  # one minute of timeout lasts 0.2 s: timeout_minutes=10 is two seconds


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    files = {"config.json": b'{"hidden_size": 8}\n', "weights/tiny.bin": b"\x00tiny-weights"}
    with FakeHub(HF_REPO, files, HF_TOKEN) as fake:
        yield fake


@pytest.fixture(scope="module")
def env_server(tmp_path_factory: pytest.TempPathFactory, hub: FakeHub) -> Iterator[LocalServer]:
    wheelhouse = tmp_path_factory.mktemp("wheelhouse")
    wheelhouse.chmod(0o755)  # jobs of a root server run as an unprivileged uid
    build_wheel(wheelhouse)
    env = {
        "DUMONT_SERVER_SHARED_DIRS": str(tmp_path_factory.getbasetemp() / "env-shared"),
        "HF_ENDPOINT": hub.url,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheelhouse),
        "DUMONT_SERVER_TIME_SCALE": str(TIME_SCALE),
    }
    with private_server(tmp_path_factory.mktemp("jobs-env-plane"), env) as server:
        yield server


@pytest.fixture
def env_user(env_server: LocalServer) -> UserSession:
    return new_user(env_server.url)


def test_timeout_ends_the_job_with_status_timeout(
    env_server: LocalServer, env_user: UserSession
) -> None:
    job = create_job(env_user, command="echo begin; sleep 60", timeout_minutes=10)

    ended = wait_for(env_user, job["id"], "timeout")
    child = runner_state(env_server, job["id"])["child_pgid"]

    assert ended["error_message"] == "Job exceeded its timeout of 10 minutes"
    assert ended["exit_code"] is None
    assert not group_alive(child)
    assert logs(env_user, job["id"]).startswith("begin\n")


def test_the_timeout_ends_every_rank_of_a_group(
    env_server: LocalServer, env_user: UserSession
) -> None:
    job = create_job(env_user, command="echo begin; sleep 60", timeout_minutes=10, num_nodes=2)

    ended = wait_for(env_user, job["id"], "timeout")
    groups = runner_state(env_server, job["id"])["child_pgids"]

    assert ended["error_message"] == "Job exceeded its timeout of 10 minutes"
    assert len(groups) == 2 and not any(group_alive(g) for g in groups)
    assert not tagged_pids(job["id"])


@pytest.mark.slow
def test_pip_packages_install_from_the_local_wheelhouse(env_user: UserSession) -> None:
    job = create_job(
        env_user,
        pip_packages=["dumont_tinypkg"],
        command='python -c "import dumont_tinypkg; print(dumont_tinypkg.VALUE)"',
    )
    wait_for(env_user, job["id"], "completed", timeout=60)
    assert logs(env_user, job["id"]).endswith("tiny-ok\n")

    missing = create_job(env_user, pip_packages=["no-such-package-xyz"], command="echo never")
    failed = wait_for(env_user, missing["id"], "failed", timeout=60)
    assert failed["error_message"] == "pip install of pip_packages failed (exit code 1)"
    assert "never" not in logs(env_user, missing["id"])


@pytest.mark.slow
def test_source_git_installs_the_repos_requirements(
    tmp_path_factory: pytest.TempPathFactory, env_user: UserSession
) -> None:
    shared = tmp_path_factory.getbasetemp() / "env-shared"
    url = make_git_repo(shared / "repo", {"requirements.txt": "dumont_tinypkg\n"})
    job = create_job(
        env_user,
        source="git",
        git_url=url,
        command='python -c "import dumont_tinypkg as t; print(t.VALUE)"',
    )
    wait_for(env_user, job["id"], "completed", timeout=60)
    assert logs(env_user, job["id"]).endswith("tiny-ok\n")


@pytest.mark.slow
def test_source_huggingface_downloads_with_the_token_and_never_leaks_it(
    env_server: LocalServer, env_user: UserSession, hub: FakeHub
) -> None:
    job = create_job(
        env_user,
        source="huggingface",
        hf_repo=HF_REPO,
        hf_token=HF_TOKEN,
        command='cat config.json; ls weights; echo "token=$HF_TOKEN"',
        auto_destroy=False,
    )
    assert HF_TOKEN not in json.dumps(job)
    done = wait_for(env_user, job["id"], "completed", timeout=60)

    text = logs(env_user, job["id"])
    assert '{"hidden_size": 8}\ntiny.bin\ntoken=***\n' in text
    assert HF_TOKEN not in text
    assert HF_TOKEN not in json.dumps(done)
    with env_user.http() as http:
        assert HF_TOKEN not in http.get(JOBS).text
    model = job_dir(env_server, job["id"]) / "workspace" / "model"
    assert (model / "weights" / "tiny.bin").read_bytes() == b"\x00tiny-weights"
    assert HF_TOKEN not in all_files_text(job_dir(env_server, job["id"]))
    assert HF_TOKEN not in all_files_text(env_server.data_dir)
    assert any(auth == f"Bearer {HF_TOKEN}" for _, _, auth in hub.requests)


def test_source_huggingface_without_the_token_fails_with_a_clear_reason(
    env_user: UserSession,
) -> None:
    job = create_job(env_user, source="huggingface", hf_repo=HF_REPO, command="echo never")
    failed = wait_for(env_user, job["id"], "failed", timeout=60)
    assert failed["error_message"].startswith(f"Hugging Face download of {HF_REPO}@main failed: ")
    assert "never" not in logs(env_user, job["id"])


def test_the_hf_token_is_masked_even_when_the_command_prints_it_at_an_odd_place(
    env_server: LocalServer, env_user: UserSession
) -> None:
    job = create_job(
        env_user,
        hf_token=HF_TOKEN,
        command='printf "a%sb" "$HF_TOKEN"; printf "\\n%s" "$HF_TOKEN" >&2',
    )
    wait_for(env_user, job["id"], "completed")
    assert logs(env_user, job["id"]) == "a***b\n***"
    wait_until(
        lambda: runner_state(env_server, job["id"]).get("result") == "completed",
        what="the runner to finish",
    )
    assert HF_TOKEN not in all_files_text(Path(job_dir(env_server, job["id"])))
