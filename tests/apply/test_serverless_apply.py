"""`serverless:` end to end against a real local control plane: apply enables the policy, a
plan right after is empty, a change is an update in place (the same instance, enable again), a
pause by the policy is not undone by the next plan, the webhook is signed with the secret the
spec names, which never reaches output, state or the server's data, and destroy disables the
policy before deleting the instance."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dumont_plan.errors import NotFoundError
from tests.apply.applykit import Project, tree_text, wait_until
from tests.server.serverlessfixtures import advance, paused, until_status
from tests.support import LocalServer, new_user

MARKER = "hook-SECRET-7d41c0"

SPEC = """
version: 1
project: sl
instances:
  box:
    gpu_name: RTX 4090
serverless:
  box:
    instance: ${{instance.box.id}}
    mode: {mode}
    idle_timeout_seconds: {timeout}
    gpu_threshold: 50
    webhook:
      url: http://127.0.0.1:{port}/hook
      secret: ${{secret.HOOK_KEY}}
"""


class Receiver:
    """A loopback webhook receiver: every POST's headers and raw body."""

    def __init__(self) -> None:
        self.events: list[tuple[dict[str, str], bytes]] = []
        received = self.events

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append((dict(self.headers.items()), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    server = LocalServer(tmp_path_factory.mktemp("serverless-plane")).start()
    yield server
    server.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.stop()


def signed_with(secret: str, headers: dict[str, str], body: bytes) -> bool:
    fields = dict(part.split("=", 1) for part in headers["X-Dumont-Signature"].split(","))
    expected = hmac.new(
        secret.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, fields["v1"])


@pytest.mark.slow
def test_apply_update_in_place_pause_and_destroy(
    plane: LocalServer, receiver: Receiver, tmp_path: Path
) -> None:
    user = new_user(plane.url)
    home = tmp_path / "home"
    home.mkdir()
    proj = Project(tmp_path / "work", home, user.url, user.token, HOOK_KEY=MARKER)
    outputs: list[str] = []

    def cli(*args: str, code: int | None = 0) -> str:
        done = proj(*args, code=code, timeout=180)
        outputs.append(done.stdout + done.stderr)
        return done.stdout

    proj.write(SPEC.format(mode="economic", timeout=300, port=receiver.port))
    plan = cli("plan")
    assert "+ create serverless.box" in plan
    assert "note: economic: idle $0.005/h vs $" in plan and "/h running" in plan

    assert "Apply complete" in cli("apply", "-y")
    iid = int(proj.remote_id("instance.box"))
    assert proj.remote_id("serverless.box") == str(iid)
    policy = user.client.serverless.status(iid)
    assert (policy.mode, policy.idle_timeout_seconds, policy.gpu_threshold) == (
        "economic",
        300,
        50.0,
    )
    assert policy.webhook_url == f"http://127.0.0.1:{receiver.port}/hook"
    cli("plan", "--detailed-exitcode")  # exit 0: nothing to change

    # A new mode and timeout: an update in place on the same instance.
    proj.write(SPEC.format(mode="fast", timeout=2, port=receiver.port))
    plan = cli("plan", "--detailed-exitcode", code=2)
    assert "~ update serverless.box" in plan and "note: fast: idle $0.01/h vs $" in plan
    assert "instance.box" not in plan.split("Plan:")[0].replace("serverless.box", "")
    applied = cli("apply", "-y")
    assert "Apply complete" in applied and "replace" not in applied
    assert proj.remote_id("instance.box") == str(iid)
    again = user.client.serverless.status(iid)
    assert (again.mode, again.idle_timeout_seconds) == ("fast", 2)

    # The policy pauses the idle instance: the next plan leaves it paused, and the webhook
    # arrives signed with the secret the spec named.
    with user.http() as http:
        until_status(http, iid, lambda body: body["idle_since"] is not None)
        advance(http, 5)
        until_status(http, iid, paused)
    assert user.client.instances.get(iid).is_paused
    cli("plan", "--detailed-exitcode")
    wait_until(lambda: bool(receiver.events), timeout=30, what="the paused webhook")
    headers, body = receiver.events[0]
    assert json.loads(body)["event"] == "paused"
    assert signed_with(MARKER, headers, body)

    destroyed = cli("destroy", "-y")
    assert destroyed.index("serverless.box") < destroyed.index("instance.box"), destroyed
    assert proj.state()["resources"] == {}
    with pytest.raises(NotFoundError):
        user.client.serverless.status(iid)

    # The secret's value reached the server (the signature above) and nothing else.
    seen = "\n".join(outputs) + tree_text(proj.folder / ".dumont") + tree_text(plane.data_dir)
    assert MARKER not in seen


CRASH_SPEC = """
version: 1
project: slcrash
instances:
  box: {speed_tier: fast, max_price: 2.0}
serverless:
  box: {instance: "${instance.box.id}", mode: economic, idle_timeout_seconds: 600}
"""
CRASH_WRITES = 4  # two creates, two ledger writes each


@pytest.mark.slow
@pytest.mark.parametrize("after", range(1, CRASH_WRITES + 1))
def test_killed_after_each_ledger_write_then_applied_again(
    plane: LocalServer, tmp_path: Path, after: int
) -> None:
    """Enable is an upsert: a policy enabled by an apply that died before recording it is
    enabled again by the next apply, never duplicated."""
    user = new_user(plane.url)
    home = tmp_path / "home"
    home.mkdir()
    proj = Project(tmp_path / "work", home, user.url, user.token)
    proj.write(CRASH_SPEC)
    died = proj.popen("apply", "-y", extra_env={"DUMONT_TEST_CRASH_AFTER": str(after)})
    died.communicate(timeout=180)
    assert died.returncode == 137
    again = proj("apply", "-y", timeout=180).stdout
    # Killed after its last write, the dead apply had done everything: nothing is left to do.
    assert ("No changes." if after == CRASH_WRITES else "Apply complete") in again, again
    proj("plan", "--detailed-exitcode")
    instances = user.client.instances.list()
    policies = user.client.serverless.list()
    assert len(instances) == 1 and [p.instance_id for p in policies] == [instances[0].id]
    assert proj.remote_id("serverless.box") == str(instances[0].id)
    assert (policies[0].mode, policies[0].idle_timeout_seconds) == ("economic", 600)
    proj("destroy", "-y", timeout=180)
    assert user.client.serverless.list() == [] and user.client.instances.list() == []
