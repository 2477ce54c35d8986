"""Apply-time resolution (apply/resolve.py) agrees with the plan, and saved-plan staleness."""

from __future__ import annotations

import json
from pathlib import Path

from dumont_plan.apply.resolve import outputs_from, resolve_body
from dumont_plan.kinds.registry import HANDLERS
from dumont_plan.plan.build import PlanOptions, build_plan
from dumont_plan.plan.fingerprint import stale_resources
from dumont_plan.plan.model import Action, Observed
from dumont_plan.secrets import SecretStore, fingerprint_secret
from dumont_plan.state.ledger import LedgerEntry, LedgerState
from dumont_plan.wire_models import Instance, Job
from tests.plan.golden import stack_of

SPEC = {
    "version": 1,
    "project": "lab",
    "instances": {"box": {"gpu_name": "RTX 4090"}},
    "jobs": {
        "use": {
            "command": "ssh -p ${instance.box.ssh_port} ${instance.box.ssh_host} run",
            "hf_token": "${secret.TOK}",
            "depends_on": ["instance.box"],
        }
    },
}
BOX = {
    "id": 101,
    "label": "lab-box",
    "status": "running",
    "actual_status": "running",
    "gpu_name": "RTX 4090",
    "num_gpus": 1,
    "ssh_host": "127.0.0.1",
    "ssh_port": 2222,
}
MARKER = "tok_MARKER_9f8e"


def test_what_apply_records_is_what_the_next_plan_expects(tmp_path: Path) -> None:
    stack = stack_of(SPEC, tmp_path)
    state = LedgerState(project="lab", salt="s1")
    observed = Observed(live={"instance": [Instance.from_wire(BOX, "test")], "job": []})
    box = build_plan(stack, observed, state, PlanOptions(targets=["instance.box"]))
    assert box.change("instance.box").action is Action.adopt  # type: ignore[union-attr]
    # Apply created the instance: the ledger knows it (as apply would record it).
    store = SecretStore({"TOK": MARKER})
    boxed = resolve_body(stack.resources["instance.box"], "lab", {}, store, "s1")
    state.resources["instance.box"] = LedgerEntry(
        kind="instance",
        remote_id="101",
        remote_name="lab-box",
        applied_spec=boxed.record.applied_spec,
    )
    resolved = resolve_body(
        stack.resources["job.use"], "lab", outputs_from(state, observed), store, "s1"
    )
    assert resolved.body["command"] == "ssh -p 2222 127.0.0.1 run"
    assert resolved.body["hf_token"] == MARKER
    assert resolved.body["name"] == "lab-use"
    assert resolved.secrets == [MARKER]
    assert MARKER not in json.dumps(resolved.record.applied_spec)
    assert resolved.record.depends_on == ["instance.box"]
    state.resources["job.use"] = LedgerEntry(
        kind="job",
        remote_id="job_1",
        remote_name="lab-use",
        applied_spec=resolved.record.applied_spec,
    )
    observed.live["job"] = [Job(id="job_1", name="lab-use", status="completed")]
    options = PlanOptions(secret_hashes={"TOK": fingerprint_secret(MARKER, "s1")})
    plan = build_plan(stack, observed, state, options)
    assert {c.address: c.action for c in plan.changes} == {
        "instance.box": Action.noop,
        "job.use": Action.noop,
    }
    # A new secret value is a change (the job is run again under on_change).
    other = PlanOptions(secret_hashes={"TOK": fingerprint_secret("another", "s1")})
    changed = build_plan(stack, observed, state, other).change("job.use")
    assert changed is not None
    assert [(f.field, f.sensitive) for f in changed.changes] == [("hf_token", True)]


def test_stale_resources_names_what_moved_since_the_plan(tmp_path: Path) -> None:
    stack = stack_of(
        {
            "version": 1,
            "project": "lab",
            "jobs": {"new": {"command": "true"}},
            "instances": {"box": {"gpu_name": "RTX 4090", "state": "paused"}},
        },
        tmp_path,
    )
    state = LedgerState(project="lab", salt="s1")
    boxed = resolve_body(stack.resources["instance.box"], "lab", {}, SecretStore({}), "s1")
    state.resources["instance.box"] = LedgerEntry(
        kind="instance",
        remote_id="101",
        applied_spec={**boxed.record.applied_spec, "state": "running"},
    )
    observed = Observed(live={"instance": [Instance.from_wire(BOX, "test")], "job": []})
    plan = build_plan(stack, observed, state)
    assert [(c.address, c.action) for c in plan.actionable()] == [
        ("instance.box", Action.pause),
        ("job.new", Action.create),
    ]
    assert stale_resources(plan, observed.live, HANDLERS) == []
    moved = {
        "instance": [Instance.from_wire({**BOX, "status": "stopped"}, "test")],
        "job": [Job(id="job_9", name="lab-new", status="running")],
    }
    assert stale_resources(plan, moved, HANDLERS) == ["instance.box", "job.new"]
    # A job moving between active statuses is not a change of what the plan decided.
    assert stale_resources(plan, {**observed.live, "job": []}, HANDLERS) == []
