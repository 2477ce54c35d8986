"""What a kind decides, and from what: `Action`, `FieldChange`, `Situation`, `Decision`. Pure.

The vocabulary the kinds and the plan share. It sits here, below `plan/`, so the kinds never
import the planner (`plan.model` re-exports `Action` and `FieldChange` for its readers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from dumont_plan.wire_models import WireModel

Live_co = TypeVar("Live_co", bound=WireModel, covariant=True)


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


class FieldChange(BaseModel):
    field: str
    old: Any = None
    new: Any = None
    sensitive: bool = False  # shown as (sensitive); old/new then hold no value
    forces_replace: bool = False
    drift: bool = False  # the old value is what the server reports, not what dumont applied
    # The value as written is unchanged: what changed is what these references resolve to
    # (`instance.box` was replaced, so `${instance.box.id}` is another id).
    via: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class Situation(Generic[Live_co]):
    """Everything `decide` may look at for one resource that is in the spec and the ledger."""

    address: str
    values: dict[str, Any]  # desired values (references resolved when known, secrets hashed)
    controls: dict[str, Any]  # run_policy, wait, lifecycle, ... as written
    live: Live_co | None  # the live object of its kind; None: gone from the server
    changes: list[FieldChange]  # desired vs last applied (ignore_changes already left out)
    forced_replace: bool = False  # --replace ADDR
    allow_restart: bool = False  # --allow-restart
    now: datetime | None = None
    price: float | None = None  # $/h of this resource's desired shape, when known


@dataclass
class Decision:
    action: Action
    reason: str = ""
    drift: str | None = None  # changed | gone | lifecycle | orphan
    error: str | None = None  # a plan error naming the address and the fix
    notes: list[str] = field(default_factory=list)
