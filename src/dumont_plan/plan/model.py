"""The Plan: what `apply` will do, resource by resource. Pure data (no I/O)."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, Field

PLAN_FORMAT_VERSION = 1


class Action(Enum):
    create = "create"  # + create
    update = "update"  # ~ update in place
    replace = "replace"  # -/+ replace (a `replace` field changed)
    delete = "delete"  # - delete (orphan in the ledger, or destroy)
    run = "run"  # > run again (a finished job under on_change/always)
    pause = "pause"  # || pause (instance state running -> paused)
    resume = "resume"  # |> resume (instance state paused -> running)
    noop = "noop"  # = nothing to do
    adopt = "adopt"  # record an object found by name after a crash (no API mutation)
    forget = "forget"  # drop a ledger entry whose object is gone (no API mutation)


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


class FieldChange(BaseModel):
    field: str
    old: Any = None
    new: Any = None
    sensitive: bool = False  # shown as (sensitive); old/new then hold no value
    forces_replace: bool = False


class ResourceChange(BaseModel):
    address: str  # kind.name
    kind: str
    name: str
    action: Action
    reason: str = ""  # why: "not found", "gpu_type changed", "spec changed (on_change)", ...
    remote_id: str | None = None  # the live object's id, when one exists
    changes: list[FieldChange] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)  # addresses applied before this one
    drift: str | None = None  # changed | gone | lifecycle | orphan
    hourly_cost: float | None = None  # $/h of what create/replace/run starts
    worst_case_cost: float | None = None  # price x timeout, where bounded
    observed_fingerprint: str | None = None  # hash of the live object seen at plan time
    desired_fingerprint: str | None = None  # hash of the desired spec (secrets hashed)


class PlanSummary(BaseModel):
    counts: dict[str, int] = Field(default_factory=dict)
    hourly_delta: float = 0.0


class Plan(BaseModel):
    """A versioned, JSON-serialisable plan; never holds a secret's value."""

    format_version: int = PLAN_FORMAT_VERSION
    project: str
    created_at: str
    changes: list[ResourceChange] = Field(default_factory=list)
    summary: PlanSummary = Field(default_factory=PlanSummary)
    errors: list[str] = Field(default_factory=list)
    spec_files: list[str] = Field(default_factory=list)
    spec_digest: str = ""  # hash of the rendered spec, to refuse a saved plan for another spec

    @property
    def has_changes(self) -> bool:
        return any(
            c.action in MUTATING or c.action in (Action.adopt, Action.forget) for c in self.changes
        )
