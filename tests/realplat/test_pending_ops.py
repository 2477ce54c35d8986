"""Item 8: a failed instance create that sent nothing leaves no pending op; refresh clears one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.support import LocalServer, UserSession, cli_env, new_user, run_cli

SPEC = """project: pending
instances:
  box:
    gpu_name: "RTX 4090"
    max_price: 2.0
"""


def test_an_instance_create_that_sent_nothing_leaves_no_pending_op(
    provider_server: Callable[[str], LocalServer], tmp_path: Path
) -> None:
    """The real server with a user's key but none of its own: instances list, offers 503."""
    server = provider_server("no-key")
    user = new_user(server.url)
    user.client.auth.update_settings(vast_api_key="vast-test-key")
    (tmp_path / "dumont.yaml").write_text(SPEC)
    env = cli_env(tmp_path / "home", server.url, user.token)
    before = server.mutating_requests()
    result = run_cli(["apply", "--auto-approve"], env, cwd=tmp_path)
    assert result.returncode != 0, result
    assert "not configured on server" in result.stdout + result.stderr
    assert server.mutating_requests() == before  # nothing that could create was sent
    state = json.loads((tmp_path / ".dumont" / "state.json").read_text())
    assert state["pending"] == []


def test_refresh_forgets_a_pending_create_that_left_nothing(
    profile_user: UserSession, tmp_path: Path
) -> None:
    (tmp_path / "dumont.yaml").write_text(SPEC)
    env = cli_env(tmp_path / "home", profile_user.url, profile_user.token)
    assert run_cli(["plan"], env, cwd=tmp_path).returncode in (0, 2)
    run_cli(["state", "list"], env, cwd=tmp_path)
    path = tmp_path / ".dumont" / "state.json"
    if not path.exists():  # a plan writes no state: start one as an apply's journal would
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"format_version": 1, "project": "pending", "serial": 1}))
    state = json.loads(path.read_text())
    state["pending"] = [
        {
            "op_id": "op-1",
            "address": "instance.box",
            "kind": "instance",
            "action": "create",
            "idempotency_key": "k1",
            "remote_name": "pending-box",
        }
    ]
    path.write_text(json.dumps(state))
    result = run_cli(["refresh"], env, cwd=tmp_path)
    assert result.returncode == 0, result
    assert json.loads(path.read_text())["pending"] == []
