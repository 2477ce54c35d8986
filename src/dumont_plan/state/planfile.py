"""Saved plans (`dumont plan -out F`, `dumont apply F`): versioned JSON, never a secret value.

The file is the Plan model (`format_version`, changes with each resource's
`observed_fingerprint`, `spec_digest`, the ledger `state_serial` and the options) under
`"kind": "dumont-plan"`. `check_plan_file` is what `apply F` runs before any mutation:

    plan = read_plan_file(path)
    check_plan_file(plan, stack, observed, ledger.state)   # StalePlanError (exit 7)
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from dumont_plan.errors import DumontError, StalePlanError
from dumont_plan.files import write_atomic
from dumont_plan.kinds.registry import HANDLERS
from dumont_plan.plan.fingerprint import stale_resources
from dumont_plan.plan.model import PLAN_FORMAT_VERSION, Observed, Plan
from dumont_plan.plan.render import plan_json
from dumont_plan.spec.stack import Stack
from dumont_plan.state.ledger import LedgerState

FILE_KIND = "dumont-plan"


def write_plan_file(plan: Plan, path: Path) -> None:
    data = {"kind": FILE_KIND, **plan_json(plan)}
    write_atomic(path, json.dumps(data, indent=2) + "\n", mode=0o600)


def read_plan_file(path: Path) -> Plan:
    """The saved plan at `path`; one clear error for a missing, foreign or newer file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DumontError(
            f"plan file {path} does not exist", "write one with `dumont plan -out FILE`"
        ) from exc
    except (OSError, ValueError) as exc:
        raise DumontError(
            f"{path} is not a dumont plan file ({exc})",
            "write one with `dumont plan -out FILE`",
        ) from exc
    if not isinstance(data, dict) or data.get("kind") != FILE_KIND:
        raise DumontError(
            f"{path} is not a dumont plan file", "write one with `dumont plan -out FILE`"
        )
    version = data.get("format_version")
    if isinstance(version, int) and version > PLAN_FORMAT_VERSION:
        raise DumontError(
            f"plan file {path} has format_version {version}; this dumont reads "
            f"{PLAN_FORMAT_VERSION}",
            "upgrade dumont-plan, or make the plan again with this version",
        )
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise DumontError(
            f"plan file {path} is damaged ({where}: {first.get('msg')})",
            "make the plan again with `dumont plan -out FILE`",
        ) from exc


def check_plan_file(
    plan: Plan, stack: Stack, observed: Observed, state: LedgerState | None = None
) -> None:
    """Refuse a saved plan made for another spec, another state, or whose resources moved
    since (exit 7). With `state`, a state written since the plan (another apply, an import,
    `state rm`) makes it stale too: its decisions rest on the ledger it read."""
    if plan.project != stack.project or plan.spec_digest != stack.digest():
        raise StalePlanError(
            "the saved plan was made for a different spec (the spec files changed since)",
            "make the plan again: dumont plan -out FILE",
        )
    if state is not None and state.serial != plan.state_serial:
        raise StalePlanError(
            f"the saved plan is stale: the state changed since it was made (serial "
            f"{plan.state_serial} -> {state.serial})",
            "make the plan again: dumont plan -out FILE",
        )
    stale = stale_resources(plan, observed.live, HANDLERS)
    if stale:
        raise StalePlanError(
            "the saved plan is stale: the live state of "
            + ", ".join(stale)
            + " changed since it was made",
            "make the plan again: dumont plan -out FILE",
        )
