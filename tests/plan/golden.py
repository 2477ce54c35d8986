"""Golden plan cases: `tests/cases/plan/*.yaml` drive `build_plan` directly (pure, no server).

A case:

    description: what it shows
    desired: {version: 1, project: p, jobs: {...}}   # the spec (a mapping or YAML text)
    files: {train.jsonl: "text"}                     # optional: files beside the spec
    ledger:                                          # optional
      resources:
        job.train:
          remote_id: job_1
          applied: current          # the desired record of `desired`, as apply would write it
          with: {command: old}      # ...then these applied values changed (what was applied)
          prevent_destroy: true     # any other LedgerEntry field as is
      pending: [{address: job.train, action: create, remote_name: p-train}]
    observed: {jobs: [...], instances: [...], offers: [...]}   # job_schedules: [...] too
    options: {allow_restart: true, targets: [...], secrets: {HF_TOKEN: value}, now: ISO}
    expect:
      actions: {job.train: run}       # every change of the plan, exactly
      errors: [substring, ...]        # each matched by one plan error; none when absent
      violations: [substring, ...]
      reasons: {job.train: substring}
      notes: {job.train: substring}
      drift: {job.train: lifecycle}
      fields: {job.train: [command]}  # the changed fields, in order
      forced_by: {instance.box: [gpu_name]}
      sensitive: {job.train: [hf_token]}
      depends_on: {job.a: [instance.b]}
      order: [job.a, instance.b]      # these addresses appear in this order
      hourly: {job.train: 0.19}
      worst_case: {job.train: 1.52}
      summary: {hourly_delta: 0.19, worst_case_cost: 1.52}
      absent: [text, ...]             # never in the plan's JSON
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from dumont_plan.kinds.base import id_value
from dumont_plan.kinds.registry import HANDLERS, SECTIONS
from dumont_plan.loader import load_stack
from dumont_plan.plan.build import PlanOptions, build_plan
from dumont_plan.plan.fingerprint import desired_record
from dumont_plan.plan.model import UNKNOWN, Observed, Plan
from dumont_plan.secrets import fingerprint_secret
from dumont_plan.spec.refs import Ref
from dumont_plan.spec.stack import Stack
from dumont_plan.state.ledger import LedgerEntry, LedgerState, PendingOp
from dumont_plan.wire_models import JobSchedule, Offer

CASES = Path(__file__).resolve().parents[1] / "cases" / "plan"
SALT = "golden-salt"


def load_case(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def stack_of(desired: Any, tmp: Path) -> Stack:
    text = desired if isinstance(desired, str) else yaml.safe_dump(desired, sort_keys=False)
    (tmp / "dumont.yaml").write_text(text)
    return load_stack([tmp / "dumont.yaml"], tmp, env={})


def ledger_of(case: dict[str, Any], stack: Stack) -> LedgerState:
    raw = dict(case.get("ledger") or {})
    secrets = dict((case.get("options") or {}).get("secrets") or {})
    project = str(raw.get("project", stack.project))
    state = LedgerState(project=project, salt=SALT, serial=int(raw.get("serial", 3)))
    entries = raw.get("resources") or {}

    def resolve(ref: Ref) -> Any:
        target = entries.get(ref.address) or {}
        if (ref.attr or "id") == "id":
            return id_value(str(target.get("remote_id")))
        return target.get(ref.attr or "", UNKNOWN)

    for address, spec in entries.items():
        spec = dict(spec)
        kind = address.split(".", 1)[0]
        applied = spec.pop("applied", None)
        overrides = spec.pop("with", {}) or {}
        entry = LedgerEntry(kind=kind, **spec)
        if applied == "current":
            resource = stack.resources[address]
            record = desired_record(
                HANDLERS[kind],
                resource,
                stack.project,
                resolve=resolve,
                secret_hash=lambda name: fingerprint_secret(secrets.get(name, ""), SALT),
                salt=SALT,
            )
            entry.applied_spec = {**record.applied_spec, **overrides}
            entry.depends_on = list(record.depends_on)
            if "prevent_destroy" not in spec:
                entry.prevent_destroy = record.prevent_destroy
            if entry.remote_name is None:
                entry.remote_name = HANDLERS[kind].remote_name(
                    stack.project, resource.name, record.applied_spec
                )
        elif applied is not None:
            entry.applied_spec = dict(applied)
        state.resources[address] = entry
    for op in raw.get("pending") or []:
        op = dict(op)
        op.setdefault("op_id", "op1")
        op.setdefault("kind", op["address"].split(".", 1)[0])
        state.pending.append(PendingOp(**op))
    state.retired = list(raw.get("retired") or [])
    return state


def observed_of(case: dict[str, Any]) -> Observed:
    """The case's observed objects (YAML dicts), read as the client reads the API's answers."""
    raw = case.get("observed") or {}
    live = {}
    for section, objects in raw.items():
        if section not in ("offers", "job_schedules"):
            kind = SECTIONS.get(section, section)
            live[kind] = HANDLERS[kind].live_model.list_from_wire(list(objects), "golden case")
    # cron schedules are the `job` kind's objects too (kinds/job_schedule.py)
    schedules = JobSchedule.list_from_wire(list(raw.get("job_schedules") or []), "golden case")
    if schedules:
        live["job"] = [*live.get("job", []), *schedules]
    offers = Offer.list_from_wire(list(raw.get("offers") or []), "golden case")
    return Observed(live=live, offers=offers, offer_queries=["q"] if offers else [])


def options_of(case: dict[str, Any]) -> PlanOptions:
    raw = dict(case.get("options") or {})
    secrets = raw.pop("secrets", {}) or {}
    now = raw.pop("now", "2026-01-05T12:00:00+00:00")
    return PlanOptions(
        secret_hashes={k: fingerprint_secret(v, SALT) for k, v in secrets.items()},
        now=datetime.fromisoformat(str(now).replace("Z", "+00:00")),
        **raw,
    )


def run_case(case: dict[str, Any], tmp: Path) -> Plan:
    for name, text in (case.get("files") or {}).items():
        (tmp / name).write_text(str(text))
    stack = stack_of(case["desired"], tmp)
    return build_plan(stack, observed_of(case), ledger_of(case, stack), options_of(case))
