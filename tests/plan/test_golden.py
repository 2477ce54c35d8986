"""Every golden plan case (tests/cases/plan/*.yaml) against build_plan (see golden.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dumont_plan.plan.model import Action, Plan
from tests.plan.golden import CASES, load_case, run_case

CASE_FILES = sorted(CASES.glob("*.yaml"))


def _change(plan: Plan, address: str) -> Any:
    change = plan.change(address)
    assert change is not None, f"{address} is not in the plan: {[c.address for c in plan.changes]}"
    return change


def check(plan: Plan, expect: dict[str, Any]) -> None:
    actions = {c.address: c.action.value for c in plan.changes}
    if "actions" in expect:
        assert actions == expect["actions"], plan.errors
    errors = expect.get("errors", [])
    assert len(plan.errors) == len(errors), plan.errors
    for text in errors:
        assert any(text in e for e in plan.errors), (text, plan.errors)
    violations = expect.get("violations", [])
    assert len(plan.policy_violations) == len(violations), plan.policy_violations
    for text in violations:
        assert any(text in v for v in plan.policy_violations), (text, plan.policy_violations)
    for address, text in (expect.get("reasons") or {}).items():
        assert text in _change(plan, address).reason, (address, _change(plan, address).reason)
    for address, text in (expect.get("notes") or {}).items():
        notes = _change(plan, address).notes
        assert any(text in n for n in notes), (address, notes)
    for address, drift in (expect.get("drift") or {}).items():
        assert _change(plan, address).drift == drift, address
    for address, fields in (expect.get("fields") or {}).items():
        assert [f.field for f in _change(plan, address).changes] == fields, address
    for address, fields in (expect.get("forced_by") or {}).items():
        assert _change(plan, address).forced_by == fields, address
    for address, fields in (expect.get("sensitive") or {}).items():
        change = _change(plan, address)
        sensitive = [f for f in change.changes if f.sensitive]
        assert [f.field for f in sensitive] == fields, address
        assert all(f.old is None and f.new is None for f in sensitive), address
    for address, deps in (expect.get("depends_on") or {}).items():
        assert _change(plan, address).depends_on == deps, address
    if "order" in expect:
        positions = [actions_index(plan, a) for a in expect["order"]]
        assert positions == sorted(positions), [c.address for c in plan.changes]
    for address, price in (expect.get("hourly") or {}).items():
        assert _change(plan, address).hourly_cost == pytest.approx(price), address
    for address, price in (expect.get("worst_case") or {}).items():
        assert _change(plan, address).worst_case_cost == pytest.approx(price), address
    for key, value in (expect.get("summary") or {}).items():
        assert getattr(plan.summary, key) == pytest.approx(value), key
    text = json.dumps(plan.model_dump(mode="json"))
    for secret in expect.get("absent", []):
        assert secret not in text


def actions_index(plan: Plan, address: str) -> int:
    return [c.address for c in plan.changes].index(address)


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_golden_case(path: Path, tmp_path: Path) -> None:
    case = load_case(path)
    plan = run_case(case, tmp_path)
    check(plan, case["expect"])


def test_the_cases_cover_every_action() -> None:
    seen: set[str] = set()
    for path in CASE_FILES:
        seen.update((load_case(path)["expect"].get("actions") or {}).values())
    assert seen == {a.value for a in Action}
