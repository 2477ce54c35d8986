"""Resources that govern others (a serverless policy governs its instance). Pure.

A kind whose handler sets `governs = (field, kind)` names, in `field`, the `${kind.NAME.id}`
of the resource it changes: its live object has that resource's id as its own. The planner
asks it for two things:

- `cost_effect(values, governed_hourly)`: a note on the governed resource's $/h (its planned
  start when it is created or replaced, else its live price);
- `governed_live_values(live)`: how the governed resource's live fields read while it governs
  them (an instance the policy paused is meant to run: no resume, no drift).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dumont_plan.kinds.base import RegisteredHandler
from dumont_plan.kinds.registry import HANDLERS
from dumont_plan.plan.model import Action, ResourceChange
from dumont_plan.spec.refs import refs_in
from dumont_plan.wire_models import WireModel


def governed_note(
    handler: RegisteredHandler,
    values: Mapping[str, Any],
    desired: Mapping[str, Any],
    decided: Mapping[str, ResourceChange],
    live_index: Mapping[str, Mapping[str, WireModel]],
) -> str | None:
    """The kind's note on the $/h of the resource it `governs` (see the module doc)."""
    if handler.governs is None:
        return None
    field, kind = handler.governs
    raw = values.get(field)
    refs = refs_in(raw) if isinstance(raw, str) else []
    target = decided.get(refs[0].address) if refs else None
    price: float | None = None
    if target is not None and target.action in (Action.create, Action.replace):
        price = target.hourly_cost
    else:
        live = live_index.get(kind, {}).get(str(desired.get(field)))
        target_handler = HANDLERS.get(kind)
        if live is not None and target_handler is not None:
            price = target_handler.live_price(live)
    return handler.cost_effect(values, price)


def governed_values(
    kind: str, remote_id: str, live_index: Mapping[str, Mapping[str, WireModel]]
) -> dict[str, Any]:
    """Live fields of the `kind` object `remote_id` as its governors say they read."""
    out: dict[str, Any] = {}
    for governor_kind, handler in HANDLERS.items():
        if handler.governs is None or handler.governs[1] != kind:
            continue
        governor = live_index.get(governor_kind, {}).get(remote_id)
        if governor is not None:
            out.update(handler.governed_live_values(governor))
    return out
