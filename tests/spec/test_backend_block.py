"""The spec's `backend:` block: validated with file:line:col, read as written, no secrets in
it; read alone by the state commands; `--backend-config` and DUMONT_BACKEND_* on top."""

from __future__ import annotations

from pathlib import Path

import pytest

from dumont_plan.errors import SpecError
from dumont_plan.loader import load_backend
from tests.spec.test_loader import errors_of, load, write
from tests.support import cli_env, run_cli

GITLAB = "https://gitlab.example.com/api/v4/projects/42/terraform/state/prod"


def test_a_backend_block_is_kept_on_the_stack_and_not_in_its_digest(tmp_path: Path) -> None:
    write(tmp_path, "dumont.yaml", "project: p\njobs:\n  a: {command: echo}\n")
    before = load(tmp_path).digest()
    write(
        tmp_path,
        "dumont.yaml",
        f"""
        project: p
        backend:
          type: http
          address: {GITLAB}
          lock_address: {GITLAB}/lock
          lock_method: POST
          unlock_method: DELETE
          username: ana
        jobs:
          a: {{command: echo}}
        """,
    )
    stack = load(tmp_path)
    assert stack.backend is not None and stack.backend.type == "http"
    assert stack.backend.lock_method == "POST" and stack.backend.unlock_method == "DELETE"
    assert stack.backend.update_method == "POST" and stack.backend.retry_max == 2
    assert stack.digest() == before  # moving the state elsewhere changes no plan
    backend, project, root = load_backend(None, tmp_path)
    assert backend == stack.backend and project == "p" and root == tmp_path.resolve()


@pytest.mark.parametrize(
    ("block", "wanted"),
    [
        ("  type: http\n  password: hunter2-secret", "`password` does not belong in the spec"),
        ("  type: http\n  token: abc", "DUMONT_BACKEND_TOKEN"),
        ("  type: local\n  address: https://x/y", "address only apply to `type: http`"),
        ("  type: http\n  address: '{{ env.X }}'", "backend.address"),
        ("  type: s3", "backend.type"),
        ("  type: http\n  lock_method: lock me", "backend.lock_method"),
    ],
)
def test_bad_backend_blocks_are_located_and_say_what_to_do(
    tmp_path: Path, block: str, wanted: str
) -> None:
    write(tmp_path, "dumont.yaml", f"project: p\nbackend:\n{block}\n")
    lines = errors_of(tmp_path)
    assert any(wanted in line and "dumont.yaml:" in line for line in lines), lines
    assert all("hunter2-secret" not in line for line in lines)
    with pytest.raises(SpecError) as caught:  # the state commands read it alone: same error
        load_backend(None, tmp_path)
    assert wanted in str(caught.value)


def test_two_files_with_different_backends_are_an_error(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "project: p\nbackend: {type: http}\n")
    write(tmp_path, "b.yaml", "backend: {type: local}\n")
    lines = errors_of(tmp_path, paths=[tmp_path / "a.yaml", tmp_path / "b.yaml"])
    assert any("differs from the backend at" in line for line in lines), lines


def test_backend_config_keys_are_checked(tmp_path: Path) -> None:
    write(tmp_path, "dumont.yaml", "project: p\n")
    env = cli_env(tmp_path / "home")
    bad = run_cli(["--backend-config", "adress=https://x", "state", "list"], env, cwd=tmp_path)
    assert bad.returncode == 1
    assert "--backend-config 'adress': expected KEY=VALUE with KEY one of" in bad.stderr
    assert "Traceback" not in bad.stderr
    env["DUMONT_BACKEND_RETRY_MAX"] = "many"
    worse = run_cli(["state", "list"], env, cwd=tmp_path)
    assert worse.returncode == 1
    assert "Error: backend retry_max:" in worse.stderr
    assert "DUMONT_BACKEND_*" in worse.stderr
    local = run_cli(["state", "list"], cli_env(tmp_path / "home"), cwd=tmp_path)
    assert local.returncode == 0 and "No state yet" in local.stdout
