"""What the declarative commands (plan, show, state, apply) share: options, paths, output.

The work itself is the library's (apply/workflow.py: plan_stack, apply_stack, refresh_state,
import_resource); the commands parse their options into its arguments and draw its results:

    stack = load_from_options(files, var, var_file)
    ledger = read_state(ctx, stack, state, files)  # the spec's backend: a file or remote
    planned = plan_stack(client, stack, ledger, plan_options(targets=..., ...))
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dumont_plan.cli.output import OutputFormat, console, emit_json, err_console

if TYPE_CHECKING:
    from dumont_plan.client import DumontClient
    from dumont_plan.plan.select import PlanOptions
    from dumont_plan.spec.stack import Stack
    from dumont_plan.state.backend import StateBackend
    from dumont_plan.state.ledger import Ledger

StateOpt = Annotated[
    Path | None,
    typer.Option(
        "--state", help="State file (default: .dumont/state.json beside the first spec file)."
    ),
]


def plan_options(
    *,
    targets: list[str] | None,
    excludes: list[str] | None,
    replace: list[str] | None,
    destroy: bool,
    allow_restart: bool,
    max_cost: float | None,
    fingerprints: bool = True,
) -> PlanOptions:
    """The planner's options from the command line (the secret hashes are the library's).
    `fingerprints=False`: the plan is only drawn as a table (PlanOptions.fingerprints)."""
    from dumont_plan.plan.select import PlanOptions

    return PlanOptions(
        targets=targets or [],
        excludes=excludes or [],
        replace=replace or [],
        destroy=destroy,
        allow_restart=allow_restart,
        max_cost=max_cost,
        fingerprints=fingerprints,
    )


def open_api(ctx: typer.Context) -> DumontClient:
    """A logged-in client (the embedded server when no API URL is configured)."""
    from dumont_plan.cli.session import open_client  # httpx: only for commands that call

    return open_client(ctx)


def open_state(
    ctx: typer.Context,
    stack: Stack | None,
    state: Path | None,
    files: list[Path] | None,
) -> StateBackend:
    """The state backend of this command (cli/backend.py): `--state`, the spec's
    `backend:`, DUMONT_BACKEND_*, `--backend-config`. Close it when done."""
    from dumont_plan.cli.backend import open_backend

    return open_backend(ctx, stack=stack, state=state, files=files)


def read_state(
    ctx: typer.Context, stack: Stack | None, state: Path | None, files: list[Path] | None
) -> Ledger:
    """The state as it is now, read without its lock (plan, show, state list)."""
    backend = open_state(ctx, stack, state, files)
    try:
        holder = backend.busy()
        if holder:
            from dumont_plan.cli.output import err_console

            err_console.print(
                f"[yellow]warning:[/] the state is being changed by {holder}: what this "
                "shows may change when it finishes",
                highlight=False,
            )
        return backend.load(stack.project if stack is not None else None)
    finally:
        backend.close()


def live_statuses(ctx: typer.Context, ledger: Ledger) -> dict[str, str]:
    from dumont_plan.apply.plan_flow import live_statuses as read_statuses

    client = open_api(ctx)
    try:
        return read_statuses(client, ledger)
    finally:
        client.close()


def print_state(
    ledger: Ledger, statuses: dict[str, str], output: OutputFormat, *, with_status: bool
) -> None:
    from dumont_plan.plan.render import render_rows, state_rows

    if output is OutputFormat.json:
        data: dict[str, Any] = {
            "format_version": ledger.state.format_version,
            "project": ledger.state.project,
            "serial": ledger.state.serial,
            "path": ledger.where,
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
        console.print(f"No state yet at {ledger.where} (nothing applied).")
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
