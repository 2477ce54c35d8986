"""Saved plans: the file round-trips, foreign/newer files are refused, stale plans exit 7."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dumont_plan.errors import DumontError, StalePlanError
from dumont_plan.plan.build import build_plan
from dumont_plan.plan.model import Observed
from dumont_plan.state.ledger import LedgerState
from dumont_plan.state.planfile import check_plan_file, read_plan_file, write_plan_file
from dumont_plan.wire_models import Job
from tests.plan.golden import stack_of

SPEC = {"version": 1, "project": "lab", "jobs": {"a": {"command": "true"}}}


def test_a_saved_plan_round_trips_and_checks_clean(tmp_path: Path) -> None:
    stack = stack_of(SPEC, tmp_path)
    state = LedgerState(project="lab", serial=4)
    plan = build_plan(stack, Observed(live={"job": []}), state)
    write_plan_file(plan, tmp_path / "p.json")
    assert (tmp_path / "p.json").stat().st_mode & 0o777 == 0o600
    saved = read_plan_file(tmp_path / "p.json")
    assert saved == plan
    check_plan_file(saved, stack, Observed(live={"job": []}), state)


def test_stale_saved_plans_exit_7(tmp_path: Path) -> None:
    stack = stack_of(SPEC, tmp_path)
    state = LedgerState(project="lab", serial=4)
    plan = build_plan(stack, Observed(live={"job": []}), state)
    appeared = Observed(live={"job": [Job(id="job_1", name="lab-a", status="running")]})
    with pytest.raises(StalePlanError, match=r"the live state of job\.a changed") as caught:
        check_plan_file(plan, stack, appeared, state)
    assert caught.value.exit_code == 7
    with pytest.raises(
        StalePlanError, match=r"the state changed since it was made \(serial 4 -> 5"
    ):
        check_plan_file(plan, stack, Observed(), LedgerState(project="lab", serial=5))
    other = stack_of({**SPEC, "jobs": {"a": {"command": "false"}}}, tmp_path)
    with pytest.raises(StalePlanError, match="made for a different spec"):
        check_plan_file(plan, other, Observed(), state)


def test_files_that_are_not_plans_get_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DumontError, match="does not exist; write one with `dumont plan -out"):
        read_plan_file(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text(json.dumps({"format_version": 1}))
    with pytest.raises(DumontError, match="is not a dumont plan file"):
        read_plan_file(tmp_path / "x.json")
    (tmp_path / "y.json").write_text(json.dumps({"kind": "dumont-plan", "format_version": 7}))
    with pytest.raises(DumontError, match="has format_version 7; this dumont reads 1"):
        read_plan_file(tmp_path / "y.json")
    (tmp_path / "z.json").write_text(json.dumps({"kind": "dumont-plan", "format_version": 1}))
    with pytest.raises(DumontError, match=r"is damaged \(project: Field required\)"):
        read_plan_file(tmp_path / "z.json")
