"""Which addresses a plan covers: `--target`, `--exclude`, `--replace`, `--destroy`. Pure.

- `--target ADDR`: ADDR and what it depends on (with `--destroy`: ADDR and its dependents,
  which must go first).
- `--exclude ADDR`: everything but ADDR and what depends on it (with `--destroy`: and what it
  depends on, which it still needs).
- `--replace ADDR`: must be in the spec (there is something to replace it with).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dumont_plan.spec.graph import dependencies, dependents
from dumont_plan.spec.refs import parse_address


@dataclass(frozen=True)
class PlanOptions:
    targets: Sequence[str] = ()
    excludes: Sequence[str] = ()
    replace: Sequence[str] = ()
    destroy: bool = False
    allow_restart: bool = False
    max_cost: float | None = None  # $/h the plan may add (--max-cost)
    secret_hashes: Mapping[str, str] = field(default_factory=dict)  # NAME -> salted hash
    now: datetime | None = None
    # The hashes only a saved or printed plan uses (spec_digest, each change's desired and
    # observed fingerprints): False for a plan only drawn as a table (`dumont plan` without
    # -out or --output json), which then skips that work (~20% of planning a no-op).
    fingerprints: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "targets": list(self.targets),
            "excludes": list(self.excludes),
            "replace": list(self.replace),
            "destroy": self.destroy,
            "allow_restart": self.allow_restart,
            "max_cost": self.max_cost,
        }


@dataclass
class Selection:
    selected: set[str]
    replace: set[str]
    errors: list[str]


def select_addresses(
    graph: Mapping[str, Sequence[str]], in_spec: set[str], options: PlanOptions
) -> Selection:
    """The addresses of `graph` (spec + state) the plan covers, and the bad flags."""
    known = set(graph)
    errors: list[str] = []

    def parse(values: Sequence[str], flag: str) -> list[str]:
        out = []
        for text in values:
            try:
                address = parse_address(text)
            except ValueError as exc:
                errors.append(f"{flag} {text}: {exc}")
                continue
            if address not in known:
                errors.append(
                    f"{flag} {address}: no such resource in the spec or the state; "
                    "`dumont state list` shows the state"
                )
                continue
            out.append(address)
        return out

    targets = parse(options.targets, "--target")
    excludes = parse(options.excludes, "--exclude")
    replace = set(parse(options.replace, "--replace"))
    for address in sorted(replace - in_spec):
        errors.append(
            f"--replace {address}: it is not in the spec, so there is nothing to replace it with"
        )
    if options.destroy:
        selected = set(targets) | dependents(graph, targets) if targets else set(known)
        selected -= set(excludes) | dependencies(graph, excludes)
    else:
        selected = set(targets) | dependencies(graph, targets) if targets else set(known)
        selected -= set(excludes) | dependents(graph, excludes)
    return Selection(selected, replace, errors)
