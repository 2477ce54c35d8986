"""The read half of the declarative commands: observe and plan a stack, check the plan.

    planned = plan_stack(client, stack, ledger, PlanOptions(targets=["job.train"]))
    check_errors(planned.plan)             # PlanError (exit 1): every plan error
    check_policy(planned.plan)             # PolicyError (exit 6): the cost gate
    live_statuses(client, ledger)          # address -> live status (`dumont state list`)

`dumont plan` runs only this module and what it imports: the live objects read (observe.py),
the pure planner (plan/), the kinds' pure parts and list calls. Nothing that changes anything
(engine, scheduler, waits, recovery, the race) is imported by it; workflow.py adds those for
apply and destroy and re-exports these names.

`PlanOptions.secret_hashes` left empty is filled here from the secret store (the environment
and the secrets files beside the spec), so a plan sees a changed secret; a destroy needs none.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import NamedTuple

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

from dumont_plan.apply.observe import Prefetch, fetch_offers, kinds_of, observe
from dumont_plan.client import DumontClient
from dumont_plan.errors import PlanError, PolicyError
from dumont_plan.kinds.registry import HANDLERS, handler_for
from dumont_plan.plan.build import build_plan
from dumont_plan.plan.cost import price_queries
from dumont_plan.plan.model import Observed, Plan
from dumont_plan.plan.select import PlanOptions
from dumont_plan.secrets import SecretStore, default_secrets_files, fingerprint_secret, secret_names
from dumont_plan.spec.stack import Stack
from dumont_plan.state.ledger import Ledger


class Planned(NamedTuple):
    """A plan and the live objects it was built from (apply needs both)."""

    plan: Plan
    observed: Observed


def secret_hashes(stack: Stack, salt: str, store: SecretStore | None = None) -> dict[str, str]:
    """Salted hashes of the secrets the spec references and that are set (values dropped)."""
    store = store or SecretStore(os.environ, default_secrets_files(stack.root))
    names: set[str] = set()
    for resource in stack.resources.values():
        if not _may_reference(resource.spec):
            continue  # most resources: no `${` anywhere in what the user wrote
        handler = handler_for(resource.kind)
        values = handler.desired_values(stack.project, resource.name, resource.spec)
        # One C-encoded text per resource finds the few with a reference (`${`) at all.
        if "${" in json.dumps(values, default=str):
            names |= secret_names(values)
    out = {}
    for name in sorted(names):
        value = store.lookup(name)
        if value is not None:
            out[name] = fingerprint_secret(value, salt)
    return out


def _may_reference(spec: BaseModel) -> bool:
    """False when no text of `spec` (its fields, their items and keys, as JSON in one call)
    holds `${`: then no desired value derived from it does."""
    try:
        return "${" in spec.model_dump_json()
    except (PydanticSerializationError, ValueError):  # not JSON as such: look the slow way
        return True


def with_secret_hashes(
    options: PlanOptions, stack: Stack, ledger: Ledger, store: SecretStore | None = None
) -> PlanOptions:
    """`options` with the secret hashes a plan compares (kept when given; none for a destroy)."""
    if options.secret_hashes or options.destroy:
        return options
    return dataclasses.replace(
        options, secret_hashes=secret_hashes(stack, ledger.state.salt, store)
    )


def plan_stack(
    client: DumontClient,
    stack: Stack,
    ledger: Ledger,
    options: PlanOptions | None = None,
    *,
    secrets: SecretStore | None = None,
    prefetched: Prefetch | None = None,
) -> Planned:
    """Observe (one list per kind), plan, fetch the offers that price it, plan again.

    `prefetched`: the spec's kinds already being read (`Prefetch(client, kinds_of(stack,
    None))`, started before the state was read)."""
    return observe_and_plan(
        client,
        stack,
        ledger,
        with_secret_hashes(options or PlanOptions(), stack, ledger, secrets),
        prefetched=prefetched,
    )


def observe_and_plan(
    client: DumontClient,
    stack: Stack,
    ledger: Ledger,
    options: PlanOptions,
    *,
    prefetched: Prefetch | None = None,
) -> Planned:
    """plan_stack with `options` as given (their secret hashes already filled in)."""
    observed = observe(
        client, kinds_of(stack, ledger.state), ledger=ledger.state, prefetched=prefetched
    )
    plan = build_plan(stack, observed, ledger, options)
    queries = price_queries(stack, plan)
    if queries and not plan.errors:
        fetch_offers(client, queries, observed)
        plan = build_plan(stack, observed, ledger, options)
    return Planned(plan, observed)


def check_errors(plan: Plan) -> None:
    """PlanError listing every plan error (exit 1)."""
    if not plan.errors:
        return
    if len(plan.errors) == 1:
        raise PlanError(plan.errors[0])
    lines = "\n".join(f"  {e}" for e in plan.errors)
    raise PlanError(f"the plan has {len(plan.errors)} errors:\n{lines}")


def check_policy(plan: Plan) -> None:
    """PolicyError (exit 6) when the plan breaks the cost gate (`max_cost`)."""
    if plan.policy_violations:
        raise PolicyError("; ".join(plan.policy_violations))


def live_statuses(client: DumontClient, ledger: Ledger) -> dict[str, str]:
    """address -> live status of each managed object still on the server (one list per kind)."""
    observed = observe(client, kinds_of(None, ledger.state), ledger=ledger.state)
    statuses = {}
    for address, entry in ledger.state.resources.items():
        handler = HANDLERS.get(entry.kind)
        if handler is None:
            continue
        for live in observed.objects(entry.kind):
            if handler.live_id(live) == entry.remote_id:
                statuses[address] = handler.status(live)
                break
    return statuses
