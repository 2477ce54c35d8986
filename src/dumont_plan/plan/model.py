"""The Plan: what `apply` will do, resource by resource. Pure data (no I/O).

A Plan is versioned JSON (`Plan.model_dump(mode="json")`, `format_version`); it never holds a
secret's value: a sensitive field change has `sensitive=True` and no old/new values.

    plan.changes            one ResourceChange per address, dependencies first
    plan.errors             plan errors (refused restarts, prevent_destroy, bad targets ...)
    plan.policy_violations  cost gates (`--max-cost`): exit 6 before any mutation
    plan.summary            counts per action, $/h delta, worst-case cost
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, InstanceOf

from dumont_plan.kinds.decision import Action as Action
from dumont_plan.kinds.decision import FieldChange as FieldChange
from dumont_plan.wire_models import Offer, WireModel

PLAN_FORMAT_VERSION = 1
UNKNOWN = "(known after apply)"  # a value that depends on a resource changed in this plan
SENSITIVE = "(sensitive)"  # in place of a value that holds a secret


SYMBOLS: dict[Action, str] = {
    Action.create: "+",
    Action.update: "~",
    Action.replace: "-/+",
    Action.delete: "-",
    Action.run: ">",
    Action.pause: "||",
    Action.resume: "|>",
    Action.noop: "=",
    Action.adopt: "<=",
    Action.forget: "x",
}

MUTATING = frozenset(
    {
        Action.create,
        Action.update,
        Action.replace,
        Action.delete,
        Action.run,
        Action.pause,
        Action.resume,
    }
)
# Actions that only touch the ledger (apply records them without an API call).
LEDGER_ONLY = frozenset({Action.adopt, Action.forget})
# Actions that start something billed by the hour (their line shows $/h).
STARTS = frozenset({Action.create, Action.replace, Action.run, Action.resume})


class ResourceChange(BaseModel):
    address: str  # kind.name
    kind: str
    name: str
    action: Action
    reason: str = ""  # why: "not found", "gpu_type changed", "spec changed (on_change)", ...
    remote_id: str | None = None  # the live object's id, when one exists
    remote_name: str | None = None  # the name the object carries (or will carry) on the server
    status: str | None = None  # the live object's status at plan time
    changes: list[FieldChange] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)  # addresses applied before this one
    drift: str | None = None  # changed | gone | lifecycle | orphan
    notes: list[str] = Field(default_factory=list)  # things worth knowing that change nothing
    # What a create/replace will send, field by field (secrets as SENSITIVE): what will run.
    attributes: dict[str, Any] = Field(default_factory=dict)
    hourly_cost: float | None = None  # $/h of what create/replace/run/resume starts
    hourly_saving: float | None = None  # $/h that delete/pause/replace stops (live price)
    worst_case_cost: float | None = None  # price x timeout, where bounded
    observed_fingerprint: str | None = None  # hash of the live object seen at plan time
    desired_fingerprint: str | None = None  # hash of the desired spec (secrets hashed)

    @property
    def forced_by(self) -> list[str]:
        """The fields whose change forces a replacement."""
        return [c.field for c in self.changes if c.forces_replace]


class PlanSummary(BaseModel):
    counts: dict[str, int] = Field(default_factory=dict)  # action value -> count (noop too)
    hourly_delta: float = 0.0  # + what starts - what stops, $/h
    worst_case_cost: float = 0.0  # sum of the bounded runs' price x timeout
    unpriced: list[str] = Field(default_factory=list)  # addresses with no price (no offer)


class Plan(BaseModel):
    """A versioned, JSON-serialisable plan; never holds a secret's value."""

    format_version: int = PLAN_FORMAT_VERSION
    project: str
    created_at: str
    changes: list[ResourceChange] = Field(default_factory=list)
    summary: PlanSummary = Field(default_factory=PlanSummary)
    errors: list[str] = Field(default_factory=list)
    # address -> why: what would start, but waits for something whose last run failed (a
    # dependent of a failed job stays blocked until that job is re-run with --replace).
    blocked: dict[str, str] = Field(default_factory=dict)
    policy_violations: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    spec_files: list[str] = Field(default_factory=list)
    spec_digest: str = ""  # hash of the rendered spec, to refuse a saved plan for another spec
    state_serial: int = 0  # the ledger serial the plan was built on
    options: dict[str, Any] = Field(default_factory=dict)  # targets, excludes, replace, destroy

    @property
    def has_changes(self) -> bool:
        return any(c.action in MUTATING or c.action in LEDGER_ONLY for c in self.changes)

    def change(self, address: str) -> ResourceChange | None:
        return next((c for c in self.changes if c.address == address), None)

    def actionable(self) -> list[ResourceChange]:
        """The changes apply carries out (everything but no-ops)."""
        return [c for c in self.changes if c.action is not Action.noop]


class Observed(BaseModel):
    """What the server reported, as `observe` read it (the input of `build_plan`)."""

    # kind -> the live objects, read models of that kind (`wire_models.Job` ...): a dict is
    # refused, not read as an empty object (tests validate theirs with the kind's live_model).
    live: dict[str, list[InstanceOf[WireModel]]] = Field(default_factory=dict)
    offers: list[InstanceOf[Offer]] = Field(default_factory=list)  # for prices (deduplicated)
    offer_queries: list[str] = Field(default_factory=list)  # canonical queries already fetched
    requests: int = 0  # HTTP requests it took
    at: str = ""  # when (ISO, UTC)

    def objects(self, kind: str) -> list[WireModel]:
        return self.live.get(kind, [])
