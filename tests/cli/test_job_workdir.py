"""`dumont job create --workdir .`: the user's code reaches /workspace (git-aware), safely,
only for its owner; a command naming a missing script says how to ship code."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dumont_plan.spec import workdir as packing
from tests.apply.applykit import Project
from tests.server.jobfixtures import create_job, logs, wait_for
from tests.support import UserSession, cli_env, run_cli

WORKDIRS = "/api/v1/jobs/workdirs"

TRAIN = """\
import os
for name in ("tracked.txt", "untracked.txt", "ignored.txt", "sub/data.txt"):
    print(name, os.path.exists(name))
print("cwd", os.getcwd())
"""


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        env={"GIT_CONFIG_GLOBAL": "/dev/null", "HOME": str(repo), "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A tiny git repo: train.py and tracked.txt committed, untracked.txt not added,
    ignored.txt and a .venv/ ignored by .gitignore."""
    root = tmp_path / "code"
    (root / "sub").mkdir(parents=True)
    (root / "train.py").write_text(TRAIN)
    (root / "tracked.txt").write_text("t\n")
    (root / "sub" / "data.txt").write_text("d\n")
    (root / "untracked.txt").write_text("u\n")
    (root / "ignored.txt").write_text("secret stuff\n")
    (root / ".venv").mkdir()
    (root / ".venv" / "big.bin").write_bytes(b"x" * 1000)
    (root / ".gitignore").write_text("ignored.txt\n.venv/\n")
    git(root, "init", "-q")
    git(root, "add", "train.py", "tracked.txt", "sub/data.txt", ".gitignore")
    git(root, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", "init")
    return root


def test_pack_follows_gitignore_and_is_deterministic(repo: Path) -> None:
    assert packing.list_files(repo) == [
        ".gitignore",
        "sub/data.txt",
        "tracked.txt",
        "train.py",
        "untracked.txt",
    ]
    assert packing.content_hash(repo) == packing.content_hash(repo)
    (repo / "train.py").write_text(TRAIN + "# changed\n")
    before = packing.content_hash(repo)
    (repo / "ignored.txt").write_text("changes nobody ships\n")
    assert packing.content_hash(repo) == before


def test_pack_outside_git_skips_defaults_and_dumontignore(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    (root / "__pycache__").mkdir(parents=True)
    (root / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (root / "node_modules" / "m").mkdir(parents=True)
    (root / "node_modules" / "m" / "i.js").write_text("")
    (root / "data").mkdir()
    (root / "data" / "huge.bin").write_text("h")
    (root / "run.sh").write_text("echo hi\n")
    (root / ".dumontignore").write_text("# big files\ndata/\n")
    assert packing.list_files(root) == [".dumontignore", "run.sh"]


def test_pack_too_big_names_the_biggest_files(tmp_path: Path) -> None:
    root = tmp_path / "big"
    root.mkdir()
    (root / "weights.bin").write_bytes(b"\1" * 5000)
    (root / "a.py").write_text("print(1)\n")
    with pytest.raises(Exception) as caught:
        packing.pack(root, max_bytes=1000)
    assert "weights.bin" in str(caught.value)
    assert ".dumontignore" in str(getattr(caught.value, "hint", ""))


@pytest.mark.slow
def test_job_create_workdir_runs_train_py(repo: Path, home: Path, user: UserSession) -> None:
    env = cli_env(home, user.url, user.token)
    result = run_cli(
        [
            "job", "create", "train", "--command=python train.py", "--workdir", ".",
            "--wait", "--output", "json",
        ],
        env,
        cwd=repo,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "5 files" in result.stderr
    assert "warning" not in result.stderr
    job_id = json.loads(result.stdout)["id"]
    text = logs(user, job_id)
    assert "tracked.txt True" in text
    assert "sub/data.txt True" in text
    assert "untracked.txt True" in text
    assert "ignored.txt False" in text
    assert "cwd /workspace" in text


def _upload(user: UserSession, data: bytes) -> Any:
    with user.http() as http:
        return http.post(WORKDIRS, files={"file": ("w.tar.gz", data, "application/gzip")})


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buffer.getvalue()


def _file(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), b"x"


def _link(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, b""


@pytest.mark.parametrize(
    ("members", "words"),
    [
        ([_file("../escape.py")], "'..'"),
        ([_file("/etc/evil.py")], "absolute"),
        ([_link("out", "/etc/passwd")], "link out"),
        ([_link("sub/out", "../../x")], "link out"),
    ],
)
def test_unsafe_members_are_refused(
    user: UserSession, members: list[tuple[tarfile.TarInfo, bytes]], words: str
) -> None:
    response = _upload(user, _tar(members))
    assert response.status_code == 422, response.text
    assert words in response.text


def test_not_an_archive_is_a_422(user: UserSession) -> None:
    response = _upload(user, b"not a tarball")
    assert response.status_code == 422, response.text
    assert "tar.gz" in response.text


def test_another_users_workdir_id_is_unknown(
    user: UserSession, make_user: Callable[[], UserSession]
) -> None:
    response = _upload(user, _tar([_file("train.py")]))
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["workdir_id"].startswith("wd_") and answer["files"] == 1
    other = make_user()
    with other.http() as http:
        refused = http.post(
            "/api/v1/jobs/", json={"command": "python train.py", "workdir_id": answer["workdir_id"]}
        )
    assert refused.status_code == 422, refused.text
    assert "not found" in refused.text and "workdir_id" in refused.text
    job = create_job(user, command="ls train.py", workdir_id=answer["workdir_id"])
    done = wait_for(user, job["id"], "completed")
    assert done["status"] == "completed"


@pytest.mark.parametrize(
    ("command", "name"),
    [
        ("python train.py", "train.py"),
        ("./run.sh", "run.sh"),
        ("bash scripts/go.sh", "scripts/go.sh"),
    ],
)
def test_a_missing_script_says_how_to_ship_code(user: UserSession, command: str, name: str) -> None:
    job = create_job(user, command=command)
    done = wait_for(user, job["id"], "failed")
    assert done["error_message"].endswith(
        f"the workspace has no {name}: ship your code with --workdir . (or `workdir:` in the spec)"
    ), done["error_message"]


def test_other_failures_get_no_hint(user: UserSession) -> None:
    job = create_job(user, command="ls missing.py; exit 2")
    done = wait_for(user, job["id"], "failed")
    assert done["error_message"] == "command exited with code 2"


def test_create_warns_when_a_script_is_named_and_no_code_is_shipped(
    tmp_path: Path, home: Path, user: UserSession
) -> None:
    env = cli_env(home, user.url, user.token)
    result = run_cli(
        ["job", "create", "train", "--command=python train.py", "--wait"], env, cwd=tmp_path
    )
    assert result.returncode == 5, (result.stdout, result.stderr)
    assert "no code is shipped" in result.stderr and "--workdir ." in result.stderr
    assert "the workspace has no train.py: ship your code with --workdir ." in (
        result.stdout + result.stderr
    )
    quiet = run_cli(["job", "create", "ok", "--command=python -c 'print(1)'"], env, cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert "warning" not in quiet.stderr


@pytest.mark.slow
def test_spec_workdir_plan_apply_and_rerun_on_change(
    tmp_path: Path, home: Path, user: UserSession
) -> None:
    project = Project(tmp_path / "work", home, user.url, user.token)
    code = project.folder / "src"
    code.mkdir(parents=True)
    (code / "train.py").write_text('print("version", 1)\n')
    (code / "notes.tmp").write_text("local only\n")
    (code / ".dumontignore").write_text("*.tmp\n")
    project.write(
        """
        project: wd
        jobs:
          train:
            workdir: ./src
            command: python train.py
            run_policy: on_change
            wait: completed
        """
    )
    planned = project("plan").stdout
    digest = packing.tree_hash(code)
    assert digest[:12] in planned and "train.py" not in planned.replace("python train.py", "")
    applied = project("apply", "-y")
    assert "Apply complete" in applied.stdout, applied.stdout
    first = project.remote_id("job.train")
    assert "version 1" in user.client.jobs.logs(first)["logs"]
    assert "No changes." in project("plan").stdout
    (code / "notes.tmp").write_text("ignored, so no change\n")
    assert "No changes." in project("plan").stdout
    (code / "train.py").write_text('print("version", 2)\n')
    changed = project("plan").stdout
    assert "workdir changed" in changed, changed
    project("apply", "-y")
    second = project.remote_id("job.train")
    assert second != first
    assert "version 2" in user.client.jobs.logs(second)["logs"]
    project("destroy", "-y")


def test_spec_workdir_must_be_a_folder(tmp_path: Path, home: Path, user: UserSession) -> None:
    project = Project(tmp_path / "work", home, user.url, user.token)
    project.write(
        """
        project: wd
        jobs:
          train: {workdir: ./nothing-here, command: python train.py}
        """
    )
    failed = project("plan", code=1)
    assert "no such folder: ./nothing-here" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_a_chain_of_links_cannot_lead_out(tmp_path: Path) -> None:
    """Each link is inside by its text, but through the first the second climbs out."""
    from dumont_plan.errors import WorkdirError
    from dumont_plan.server.provider import workdirs

    archive = tmp_path / "chain.tar.gz"
    archive.write_bytes(
        _tar(
            [
                _file("a/b/c/keep.py"),
                _link("a/b/c/d", "../../.."),
                _link("e", "a/b/c/d/../../.."),
                _link("e/evil", "x"),
            ]
        )
    )
    dest = tmp_path / "deep" / "er" / "ws"
    dest.mkdir(parents=True)
    with pytest.raises(WorkdirError, match=r"link out|leads out"):
        workdirs.safe_extract(archive, dest)
    assert not (tmp_path / "deep" / "evil").exists()
    assert not (tmp_path / "evil").exists()
    assert not (dest / "e").is_symlink()


def test_a_jobs_python_is_the_systems_not_the_control_planes(user: UserSession) -> None:
    """`python` in a job is /usr/bin/python3 (the image's stand-in), whose packages are the
    system's: the control plane's venv (httpx, fastapi, dumont_plan) is not importable."""
    from dumont_plan.server.provider.sandbox import SYSTEM_PYTHON, workload_python

    if workload_python() != str(SYSTEM_PYTHON):
        pytest.skip("no system Python of the control plane's version here")
    probe = (
        "import importlib.util, sys; print('exe', sys.executable); print('prefix', sys.prefix);"
        " print('fastapi', importlib.util.find_spec('fastapi') is not None)"
    )
    job = create_job(
        user, command=f'python -c "{probe}"; python3 -c "import sys; print(sys.prefix)"'
    )
    wait_for(user, job["id"], "completed")
    text = logs(user, job["id"])
    assert "exe /usr/bin/python3" in text
    assert "prefix /usr\n" in text
    assert "fastapi False" in text


def test_a_user_keeps_the_newest_workdirs(user: UserSession) -> None:
    from dumont_plan.server.provider import workdirs

    ids = []
    archives = [_tar([_file(f"f{n}.py")]) for n in range(workdirs.KEEP_PER_USER + 2)]
    for archive in archives:
        response = _upload(user, archive)
        assert response.status_code == 201, response.text
        ids.append(response.json()["workdir_id"])
    again = _upload(user, archives[0])  # pruned, then uploaded anew
    assert again.json()["workdir_id"] == ids[0]
    for workdir_id, usable in ((ids[0], True), (ids[1], False), (ids[2], False), (ids[-1], True)):
        with user.http() as http:
            answer = http.post("/api/v1/jobs/", json={"command": "true", "workdir_id": workdir_id})
        assert (answer.status_code == 201) is usable, (workdir_id, answer.text)
