"""`POST /api/v1/_local/reconcile`: one reconciler pass on demand, only with test hooks.

Tests that prove something does *not* happen (a cancelled job flipping back, a frozen cost
moving) drive a pass through it instead of sleeping past the loop's interval."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dumont_plan.server import reconciler as reconciler_module
from dumont_plan.server.app import create_app
from dumont_plan.server.context import AppState
from dumont_plan.server.reconciler import Reconciler
from dumont_plan.server.settings import ServerSettings

HOOK = "/api/v1/_local/reconcile"


def test_without_test_hooks_there_is_no_reconcile_route(tmp_path: Path) -> None:
    app = create_app(ServerSettings(data_dir=tmp_path), background=False)
    with TestClient(app) as http:
        posted = http.post(HOOK)
        got = http.get(HOOK)
    assert (posted.status_code, posted.json()) == (405, {"error": "Method Not Allowed"})
    assert (got.status_code, got.json()) == (404, {"error": f"API endpoint not found: {HOOK}"})


def test_the_hook_runs_one_whole_pass_before_answering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passes: list[str] = []

    def first(state: AppState) -> None:
        passes.append("first")

    def failing(state: AppState) -> None:
        passes.append("failing")
        raise RuntimeError("a failing tick does not stop the pass")

    def last(state: AppState) -> None:
        passes.append("last")

    monkeypatch.setattr(reconciler_module, "TICKS", [first, failing, last])
    settings = ServerSettings(data_dir=tmp_path, enable_test_hooks=True)
    with TestClient(create_app(settings, background=False)) as http:
        assert passes == []
        answer = http.post(HOOK)
        assert (answer.status_code, answer.json()) == (200, {"reconciled": True})
        assert passes == ["first", "failing", "last"]
        http.post(HOOK)
    assert passes == ["first", "failing", "last"] * 2


def test_passes_on_demand_and_of_the_loop_never_overlap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every pass, the loop's or the hook's, runs holding the reconciler's one pass lock."""
    held: list[bool] = []
    looped = threading.Event()

    def tick(state: AppState) -> None:
        held.append(reconciler._pass.locked())
        looped.set()

    monkeypatch.setattr(reconciler_module, "TICKS", [tick])
    settings = ServerSettings(data_dir=tmp_path, enable_test_hooks=True, reconcile_interval=60)
    app = create_app(settings)
    reconciler: Reconciler = app.state.reconciler
    with TestClient(app) as http:
        assert looped.wait(timeout=30)
        assert http.post(HOOK).status_code == 200
    assert held == [True, True]
