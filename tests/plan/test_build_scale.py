"""build_plan over thousands of resources (pure): destroy order and adoption stay correct.

Not timed (benchmarks/bench_graph.py times them): these check that the indexes the planner
builds once (removals' dependents, live objects by name, claimed ids) give the answers the
per-resource scans gave.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dumont_plan.plan.build import PlanOptions, build_plan
from dumont_plan.plan.model import Action, Observed
from dumont_plan.spec.graph import reverse
from dumont_plan.state.ledger import LedgerEntry, LedgerState
from dumont_plan.wire_models import Job
from tests.plan.golden import stack_of

N = 2000


def shape(n: int) -> dict[str, list[str]]:
    """Blocks of ten jobs: a root after the previous root, a fan-out of four, chains, a fan-in."""
    deps: dict[str, list[str]] = {}
    for i in range(n):
        root, slot = i - i % 10, i % 10
        if slot == 0:
            needs = [root - 10] if i else []
        elif slot <= 4:
            needs = [root]
        elif slot <= 8:
            needs = [i - 4]
        else:
            needs = list(range(root + 5, root + 9))
        deps[f"job.j{i}"] = [f"job.j{j}" for j in needs]
    return deps


def test_destroying_thousands_deletes_dependents_first(tmp_path: Path) -> None:
    deps = shape(N)
    state = LedgerState(project="p")
    live: list[dict[str, Any]] = []
    for address, needs in deps.items():
        name = address.removeprefix("job.")
        state.resources[address] = LedgerEntry(
            kind="job", remote_id=f"id-{name}", remote_name=f"p-{name}", depends_on=needs
        )
        live.append({"id": f"id-{name}", "name": f"p-{name}", "status": "running"})
    stack = stack_of({"version": 1, "project": "p"}, tmp_path)
    jobs = Job.list_from_wire(live, "test")
    plan = build_plan(stack, Observed(live={"job": jobs}), state, PlanOptions(destroy=True))

    assert not plan.errors
    assert {c.action for c in plan.changes} == {Action.delete}
    dependents = reverse(deps)
    position = {c.address: i for i, c in enumerate(plan.changes)}
    assert len(position) == N
    for change in plan.changes:
        assert change.depends_on == sorted(dependents[change.address]), change.address
        assert all(position[d] < position[change.address] for d in change.depends_on)


def test_a_create_adopts_the_newest_unclaimed_object_of_its_name(tmp_path: Path) -> None:
    jobs = {f"j{i}": {"command": "true"} for i in range(N)}
    stack = stack_of({"version": 1, "project": "p", "jobs": jobs}, tmp_path)
    state = LedgerState(project="p")
    state.resources["job.gone"] = LedgerEntry(kind="job", remote_id="claimed", remote_name="x")
    live = [{"id": f"other-{i}", "name": f"other-{i}", "status": "running"} for i in range(N)]
    live += [
        {"id": "old", "name": "p-j7", "status": "completed", "created_at": "2026-01-01"},
        {"id": "new", "name": "p-j7", "status": "completed", "created_at": "2026-01-02"},
        {"id": "claimed", "name": "p-j8", "status": "running", "created_at": "2026-01-03"},
    ]
    jobs = Job.list_from_wire(live, "test")
    plan = build_plan(stack, Observed(live={"job": jobs}), state, PlanOptions())

    actions = {c.address: c for c in plan.changes}
    assert actions["job.j7"].action is Action.adopt and actions["job.j7"].remote_id == "new"
    assert actions["job.j8"].action is Action.create  # its namesake belongs to job.gone
    creates = [c for c in plan.changes if c.action is Action.create]
    assert len(creates) == N - 1


def test_a_plan_drawn_only_as_a_table_skips_the_saved_plan_hashes(tmp_path: Path) -> None:
    jobs = {f"j{i}": {"command": f"echo {i}"} for i in range(20)}
    stack = stack_of({"version": 1, "project": "p", "jobs": jobs}, tmp_path)
    state = LedgerState(project="p")
    for i in range(10):  # half applied and finished, half new
        state.resources[f"job.j{i}"] = LedgerEntry(
            kind="job",
            remote_id=f"id-{i}",
            remote_name=f"p-j{i}",
            applied_spec={"command": f"echo {i}" if i % 2 else "changed"},
        )
    live = [{"id": f"id-{i}", "name": f"p-j{i}", "status": "completed"} for i in range(10)]
    observed = Observed(live={"job": Job.list_from_wire(live, "test")})

    full = build_plan(stack, observed, state, PlanOptions())
    lean = build_plan(stack, observed, state, PlanOptions(fingerprints=False))

    # The same decisions, reasons, changes and costs; only the hashes are left out.
    hashes = {"desired_fingerprint", "observed_fingerprint"}
    assert [c.model_dump(exclude=hashes) for c in lean.changes] == [
        c.model_dump(exclude=hashes) for c in full.changes
    ]
    assert {c.action for c in full.changes} >= {Action.create, Action.noop}
    assert all(c.desired_fingerprint and c.observed_fingerprint for c in full.changes)
    assert full.spec_digest.startswith("sha256:")
    assert not any(c.desired_fingerprint or c.observed_fingerprint for c in lean.changes)
    assert lean.spec_digest == ""
