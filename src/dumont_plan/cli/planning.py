"""Steps shared by the declarative commands (plan, show, state, apply): paths, secrets, plan.

stack = load_from_options(files, var, var_file)
ledger = Ledger.load(state_path_for(stack, state, files), stack.project)
hashes = secret_hashes(stack, ledger.state.salt)
plan, observed = make_plan(client, stack, ledger, PlanOptions(secret_hashes=hashes))
raise_plan_errors(plan)   # PlanError, exit 1
raise_policy(plan)        # PolicyError, exit 6
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dumont_plan.cli.output import OutputFormat, console, emit_json, err_console
from dumont_plan.errors import DumontError, PlanError, PolicyError

if TYPE_CHECKING:
    from dumont_plan.client import DumontClient
    from dumont_plan.plan.build import PlanOptions
    from dumont_plan.plan.model import Observed, Plan
    from dumont_plan.spec.stack import Stack
    from dumont_plan.state.ledger import Ledger

StateOpt = Annotated[
    Path | None,
    typer.Option(
        "--state", help="State file (default: .dumont/state.json beside the first spec file)."
    ),
]


def state_path_for(stack: Stack | None, state: Path | None, files: list[Path] | None) -> Path:
    """`--state`, else `.dumont/state.json` beside the first spec file (or here)."""
    from dumont_plan.loader import discover
    from dumont_plan.state.ledger import default_state_path

    if state is not None:
        return state
    if stack is not None:
        return default_state_path(stack.root)
    try:
        found = discover(files or None, Path.cwd())
    except DumontError:
        return default_state_path(Path.cwd())
    return default_state_path(found[0].resolve().parent)


def secret_hashes(stack: Stack, salt: str) -> dict[str, str]:
    """Salted hashes of the secrets the spec references and that are set (values dropped)."""
    from dumont_plan.kinds.registry import handler_for
    from dumont_plan.secrets import (
        SecretStore,
        default_secrets_files,
        fingerprint_secret,
        secret_names,
    )

    store = SecretStore(os.environ, default_secrets_files(stack.root))
    names: set[str] = set()
    for resource in stack.resources.values():
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


def plan_options(
    stack: Stack,
    ledger: Ledger,
    *,
    targets: list[str] | None,
    excludes: list[str] | None,
    replace: list[str] | None,
    destroy: bool,
    allow_restart: bool,
    max_cost: float | None,
) -> PlanOptions:
    """The planner's options from the command line (destroy plans need no secret hashes)."""
    from dumont_plan.plan.build import PlanOptions

    return PlanOptions(
        targets=targets or [],
        excludes=excludes or [],
        replace=replace or [],
        destroy=destroy,
        allow_restart=allow_restart,
        max_cost=max_cost,
        secret_hashes={} if destroy else secret_hashes(stack, ledger.state.salt),
    )


def make_plan(
    client: DumontClient, stack: Stack, ledger: Ledger, options: PlanOptions
) -> tuple[Plan, Observed]:
    """Observe (one list per kind), plan, fetch the offers that price it, plan again."""
    from dumont_plan.apply.observe import fetch_offers, kinds_of, observe
    from dumont_plan.plan.build import build_plan
    from dumont_plan.plan.cost import price_queries

    observed = observe(client, kinds_of(stack, ledger.state))
    plan = build_plan(stack, observed, ledger, options)
    queries = price_queries(stack, plan)
    if queries and not plan.errors:
        fetch_offers(client, queries, observed)
        plan = build_plan(stack, observed, ledger, options)
    return plan, observed


def raise_plan_errors(plan: Plan) -> None:
    """PlanError listing every plan error (exit 1)."""
    if not plan.errors:
        return
    if len(plan.errors) == 1:
        raise PlanError(plan.errors[0])
    lines = "\n".join(f"  {e}" for e in plan.errors)
    raise PlanError(f"the plan has {len(plan.errors)} errors:\n{lines}")


def raise_policy(plan: Plan) -> None:
    if plan.policy_violations:
        raise PolicyError("; ".join(plan.policy_violations))


def open_api(ctx: typer.Context) -> DumontClient:
    """A logged-in client (the embedded server when no API URL is configured)."""
    from dumont_plan.cli.session import open_client  # httpx: only for commands that call

    return open_client(ctx)


def load_ledger(path: Path, project: str | None) -> Ledger:
    from dumont_plan.state.ledger import Ledger

    return Ledger.load(path, project)


def live_statuses(ctx: typer.Context, ledger: Ledger) -> dict[str, str]:
    from dumont_plan.apply.observe import kinds_of, observe
    from dumont_plan.kinds.registry import HANDLERS

    client = open_api(ctx)
    try:
        observed = observe(client, kinds_of(None, ledger.state))
    finally:
        client.close()
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


def print_state(
    ledger: Ledger, statuses: dict[str, str], output: OutputFormat, *, with_status: bool
) -> None:
    from dumont_plan.plan.render import render_rows, state_rows

    if output is OutputFormat.json:
        data: dict[str, Any] = {
            "format_version": ledger.state.format_version,
            "project": ledger.state.project,
            "serial": ledger.state.serial,
            "path": str(ledger.path),
            "resources": {},
            "pending": [op.model_dump(mode="json") for op in ledger.state.pending],
        }
        for address, entry in sorted(ledger.state.resources.items()):
            item = entry.model_dump(mode="json", exclude={"applied_spec"})
            if with_status:
                item["live_status"] = statuses.get(address, "gone")
            data["resources"][address] = item
        emit_json(data)
        return
    if not ledger.exists:
        console.print(f"No state yet at {ledger.path} (nothing applied).")
        return
    rows = state_rows(ledger.state.resources, statuses)
    columns = ["address", "remote_id", "remote_name", "runs", "updated_at"]
    if with_status:
        columns.insert(3, "status")
    console.print(render_rows(rows, columns))
    for op in ledger.state.pending:
        err_console.print(
            f"pending: {op.action} {op.address} started {op.started_at} did not finish; "
            "the next plan adopts what it made (or `dumont refresh`)"
        )
