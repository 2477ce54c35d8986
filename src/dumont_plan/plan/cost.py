"""Costs in the plan: which offers to fetch, the summary, and the `--max-cost` gate. Pure.

Each create/replace/run/resume is priced from live offers by its kind (a job: the cheapest
offer of its GPU, spot min bid or on-demand; an instance: the cheapest offer the wizard race
would consider). The summary's `hourly_delta` is what starts minus what stops (deleted or
paused running instances, replaced ones), and `worst_case_cost` adds each bounded run's
price x timeout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dumont_plan.kinds.base import RegisteredHandler
from dumont_plan.kinds.registry import HANDLERS
from dumont_plan.plan.fingerprint import canonical_json
from dumont_plan.plan.model import STARTS, Observed, Plan
from dumont_plan.spec.stack import Stack


def query_key(query: Mapping[str, Any]) -> str:
    return canonical_json({k: v for k, v in query.items() if v is not None})


def price_queries(
    stack: Stack, plan: Plan, *, handlers: Mapping[str, RegisteredHandler] = HANDLERS
) -> list[dict[str, Any]]:
    """The distinct offer searches that price `plan` (a handful, whatever the resource count).

    Only starts need a price. (A refused restart's error shows the spend from the live cost:
    a plan with errors is not priced. Pricing no-ops made every plan of applied resources
    fetch offers and plan twice: 0.1 s at 1,000 jobs.)
    """
    queries: dict[str, dict[str, Any]] = {}
    for change in plan.changes:
        resource = stack.resources.get(change.address)
        if change.action not in STARTS or resource is None:
            continue
        handler = handlers[change.kind]
        values = handler.desired_values(stack.project, resource.name, resource.spec)
        query = handler.price_query(values)
        if query is not None:
            queries.setdefault(query_key(query), query)
    return list(queries.values())


def summarize(plan: Plan, max_cost: float | None, observed: Observed) -> None:
    """Fill `plan.summary` and `plan.policy_violations` from the priced changes."""
    counts: dict[str, int] = {}
    delta = 0.0
    worst = 0.0
    unpriced = []
    for change in plan.changes:
        counts[change.action.value] = counts.get(change.action.value, 0) + 1
        if change.action in STARTS:
            if change.hourly_cost is None:
                unpriced.append(change.address)
            else:
                delta += change.hourly_cost
            worst += change.worst_case_cost or 0.0
        if change.hourly_saving is not None:
            delta -= change.hourly_saving
    plan.summary.counts = counts
    plan.summary.hourly_delta = round(delta, 4)
    plan.summary.worst_case_cost = round(worst, 4)
    plan.summary.unpriced = unpriced
    if unpriced and observed.offer_queries:
        plan.warnings.append(
            "no live offer prices " + ", ".join(unpriced) + " right now; it may wait for "
            "capacity (`dumont instance offers` lists the market)"
        )
    if max_cost is None:
        return
    if unpriced:
        plan.policy_violations.append(
            f"--max-cost {max_cost:g}: cannot price {', '.join(unpriced)} (no live offer), so "
            "the plan's cost is unknown; pick an available GPU or drop --max-cost"
        )
    if delta > max_cost + 1e-9:
        plan.policy_violations.append(
            f"the plan adds ${delta:.2f}/h, above --max-cost ${max_cost:g}/h; "
            "apply fewer resources (--target) or raise the limit"
        )
