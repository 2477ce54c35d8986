"""The library calls behind the declarative commands, against the real local control plane.

plan_stack, apply_stack and destroy_stack are called directly (no CLI, no terminal): what is
interactive is a callback, and each test records what those callbacks were given.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from dumont_plan.apply.events import ApplyEvent, EventSink
from dumont_plan.apply.workflow import (
    ApplySettings,
    apply_stack,
    destroy_stack,
    plan_stack,
)
from dumont_plan.client import DumontClient
from dumont_plan.errors import StalePlanError
from dumont_plan.loader import load_stack
from dumont_plan.plan.model import Action, Plan
from dumont_plan.secrets import SecretStore
from dumont_plan.spec.stack import Stack
from dumont_plan.state.ledger import Ledger
from dumont_plan.state.planfile import read_plan_file, write_plan_file
from tests.apply.applykit import live_names
from tests.support import UserSession

SPEC = """
    version: 1
    project: wf
    jobs:
      hello:
        command: echo hello
        timeout_minutes: 10
      after:
        command: echo after
        timeout_minutes: 10
        depends_on: [job.hello]
        hf_token: "${secret.TOK}"
"""
QUICK = ApplySettings(parallelism=2, wait="completed", wait_timeout=120)


class Env:
    """The spec folder, its state path, and clients for the test's user (each one recorded)."""

    def __init__(self, folder: Path, user: UserSession) -> None:
        self.folder = folder
        self.user = user
        self.clients: list[DumontClient] = []
        folder.mkdir()
        (folder / "dumont.yaml").write_text(textwrap.dedent(SPEC).lstrip())
        self.stack: Stack = load_stack(None, folder, env={})
        self.state = folder / ".dumont" / "state.json"

    def connect(self) -> DumontClient:
        client = DumontClient(httpx.Client(base_url=self.user.url, timeout=30), self.user.token)
        self.clients.append(client)
        return client

    def ledger(self) -> Ledger:
        return Ledger.load(self.state, "wf")

    def plan(self, secret: str = "one") -> Plan:
        client = self.connect()
        try:
            planned = plan_stack(client, self.stack, self.ledger(), secrets=store(secret))
        finally:
            client.close()
        return planned.plan


def store(secret: str) -> SecretStore:
    return SecretStore({"TOK": secret})


def actions(plan: Plan) -> dict[str, Action]:
    return {c.address: c.action for c in plan.changes}


def never(plan: Plan) -> bool:
    raise AssertionError("asked for a confirmation it must not ask")


@pytest.fixture
def env(tmp_path: Path, user: UserSession) -> Env:
    return Env(tmp_path / "work", user)


def test_plan_apply_then_nothing_to_do_then_destroy(env: Env) -> None:
    planned = env.plan()
    assert actions(planned) == {"job.hello": Action.create, "job.after": Action.create}
    assert not env.state.exists()  # planning writes nothing

    shown: list[Plan] = []
    asked: list[Plan] = []
    events: list[ApplyEvent] = []

    def confirm(plan: Plan) -> bool:
        assert shown == [plan]  # the plan is shown before the question
        asked.append(plan)
        return True

    applied = apply_stack(
        env.connect,
        env.stack,
        env.state,
        settings=QUICK,
        show_plan=shown.append,
        confirm=confirm,
        on_event=events.append,
        secrets=store("one"),
    )
    assert applied.result is not None
    assert (applied.result.done, applied.result.failed, applied.exit_code) == (
        ["job.hello", "job.after"],
        {},
        0,
    )
    assert asked == shown and actions(asked[0]) == actions(planned)
    assert (events[0].type, events[-1].type) == ("apply_start", "apply_done")
    assert sorted(e.address for e in events if e.type == "change_done") == [
        "job.after",
        "job.hello",
    ]
    assert live_names(env.user.client)[0] == {"wf-hello": 1, "wf-after": 1}
    assert all(c.transport.http.is_closed for c in env.clients)

    # The same spec and secret: nothing to do, and apply neither asks nor runs anything.
    assert not env.plan().has_changes
    seen = len(events)
    again = apply_stack(
        env.connect,
        env.stack,
        env.state,
        confirm=never,
        on_event=events.append,
        secrets=store("one"),
    )
    assert (again.result, again.refused, again.exit_code) == (None, False, 0)
    assert len(events) == seen
    # The secret's hash is filled in by the library: a new value is a change (a finished
    # job's `run_policy: once` lists it without running the job again).
    after = env.plan("two").change("job.after")
    assert after is not None
    assert [(f.field, f.sensitive) for f in after.changes] == [("hf_token", True)]

    gone = destroy_stack(env.connect, env.stack, env.state, confirm=lambda plan: True)
    assert gone.result is not None and sorted(gone.result.done) == ["job.after", "job.hello"]
    assert env.ledger().state.resources == {}
    assert all(c.transport.http.is_closed for c in env.clients)


def test_a_confirmation_that_refuses_changes_nothing(env: Env) -> None:
    entered: list[str] = []

    @contextmanager
    def progress() -> Iterator[EventSink]:
        entered.append("progress")
        yield lambda event: None

    applied = apply_stack(
        env.connect,
        env.stack,
        env.state,
        settings=QUICK,
        confirm=lambda plan: False,
        on_event=progress(),
        secrets=store("one"),
    )
    assert applied.refused and applied.result is None
    assert actions(applied.plan) == {"job.hello": Action.create, "job.after": Action.create}
    assert entered == []  # the changes never started
    assert live_names(env.user.client) == ({}, {})
    assert not env.state.exists()
    assert env.plan().has_changes


@pytest.mark.slow
def test_a_saved_plan_applies_unasked_and_is_refused_once_stale(env: Env) -> None:
    first, second = env.folder / "first.json", env.folder / "second.json"
    write_plan_file(env.plan(), first)
    write_plan_file(env.plan(), second)

    applied = apply_stack(
        env.connect,
        env.stack,
        env.state,
        saved=read_plan_file(first),
        settings=QUICK,
        confirm=never,  # a saved plan was reviewed when it was made
        secrets=store("one"),
    )
    assert applied.result is not None and applied.result.ok
    serial = env.ledger().state.serial

    # `second` was made on the state before that apply: it would create both jobs again.
    with pytest.raises(StalePlanError) as caught:
        apply_stack(
            env.connect,
            env.stack,
            env.state,
            saved=read_plan_file(second),
            settings=QUICK,
            confirm=never,
            secrets=store("one"),
        )
    assert caught.value.exit_code == 7
    assert str(caught.value) == (
        f"the saved plan is stale: the state changed since it was made (serial 0 -> {serial}); "
        "make the plan again: dumont plan -out FILE"
    )
    assert live_names(env.user.client)[0] == {"wf-hello": 1, "wf-after": 1}
    assert env.ledger().state.serial == serial
    assert all(c.transport.http.is_closed for c in env.clients)
