"""The declarative read side: plan, show, explain, refresh, import, state, force-unlock.

(`apply`/`destroy` live in cli/apply_cmds.py, `validate`/`fmt`/`schema` in cli/spec_cmds.py.)
Heavy modules (pydantic models, the planner, rich renderables) are imported inside the
commands so `dumont --help` stays fast.

Exit codes of `plan`: 0 no changes (or changes without --detailed-exitcode), 2 changes with
--detailed-exitcode, 1 an error (a plan error lists every problem), 6 a cost gate.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dumont_plan.cli.output import OutputFormat, OutputOpt, console, emit_json, err_console
from dumont_plan.cli.spec_cmds import FilesOpt, VarFilesOpt, VarsOpt, load_from_options
from dumont_plan.errors import DumontError, PlanError, PolicyError

if TYPE_CHECKING:
    from dumont_plan.client import DumontClient
    from dumont_plan.ledger import Ledger
    from dumont_plan.plan.build import PlanOptions
    from dumont_plan.plan.model import Observed, Plan
    from dumont_plan.spec.stack import Stack

StateOpt = Annotated[
    Path | None,
    typer.Option(
        "--state", help="State file (default: .dumont/state.json beside the first spec file)."
    ),
]
TargetOpt = Annotated[
    list[str] | None,
    typer.Option("--target", help="Plan only ADDR and what it depends on (repeatable)."),
]
ExcludeOpt = Annotated[
    list[str] | None,
    typer.Option("--exclude", help="Leave out ADDR and what depends on it (repeatable)."),
]
ReplaceOpt = Annotated[
    list[str] | None,
    typer.Option("--replace", help="Replace ADDR (a finished job: run it again) (repeatable)."),
]


# -- shared steps (also used by apply) --------------------------------------------------------


def state_path_for(stack: Stack | None, state: Path | None, files: list[Path] | None) -> Path:
    """`--state`, else `.dumont/state.json` beside the first spec file (or here)."""
    from dumont_plan.ledger import default_state_path
    from dumont_plan.loader import discover

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
        names |= secret_names(handler.desired_values(stack.project, resource.name, resource.spec))
    out = {}
    for name in sorted(names):
        value = store.lookup(name)
        if value is not None:
            out[name] = fingerprint_secret(value, salt)
    return out


def make_plan(
    client: DumontClient, stack: Stack, ledger: Ledger, options: PlanOptions
) -> tuple[Plan, Observed]:
    """Observe (one list per kind), plan, fetch the offers that price it, plan again."""
    from dumont_plan.observe import fetch_offers, kinds_of, observe
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


def _client(ctx: typer.Context) -> DumontClient:
    from dumont_plan.cli.session import open_client

    return open_client(ctx)


def _load_ledger(path: Path, project: str | None) -> Ledger:
    from dumont_plan.ledger import Ledger

    return Ledger.load(path, project)


# -- plan ---------------------------------------------------------------------------------


def plan(
    ctx: typer.Context,
    files: FilesOpt = None,
    var: VarsOpt = None,
    var_file: VarFilesOpt = None,
    target: TargetOpt = None,
    exclude: ExcludeOpt = None,
    replace: ReplaceOpt = None,
    destroy: bool = typer.Option(False, "--destroy", help="Plan to delete everything managed."),
    allow_restart: bool = typer.Option(
        False, "--allow-restart", help="Allow cancelling and re-running a running job."
    ),
    max_cost: float | None = typer.Option(
        None, "--max-cost", min=0, help="Fail (exit 6) when the plan adds more than this $/h."
    ),
    out: Path | None = typer.Option(
        None, "-out", "--out", help="Save the plan to this file for `dumont apply FILE`."
    ),
    detailed_exitcode: bool = typer.Option(
        False, "--detailed-exitcode", help="Exit 2 when there are changes (0: none, 1: error)."
    ),
    output: OutputOpt = OutputFormat.table,
    state: StateOpt = None,
) -> None:
    """Show what `dumont apply` would do: diff the spec against the live state, with costs."""
    from dumont_plan.plan.build import PlanOptions
    from dumont_plan.planfile import write_plan_file
    from dumont_plan.render import plan_json, render_plan

    stack = load_from_options(files, var, var_file)
    ledger = _load_ledger(state_path_for(stack, state, files), stack.project)
    options = PlanOptions(
        targets=target or [],
        excludes=exclude or [],
        replace=replace or [],
        destroy=destroy,
        allow_restart=allow_restart,
        max_cost=max_cost,
        secret_hashes={} if destroy else secret_hashes(stack, ledger.state.salt),
    )
    client = _client(ctx)
    try:
        result, _ = make_plan(client, stack, ledger, options)
    finally:
        client.close()
    raise_plan_errors(result)
    if output is OutputFormat.json:
        emit_json(plan_json(result))
    else:
        console.print(render_plan(result))
    raise_policy(result)
    if out is not None:
        write_plan_file(result, out)
        if output is not OutputFormat.json:
            console.print(f"\nSaved the plan to {out}; `dumont apply {out}` carries it out.")
    if detailed_exitcode and result.has_changes:
        raise typer.Exit(2)


# -- show / explain -----------------------------------------------------------------------


def show(
    ctx: typer.Context,
    planfile: Path | None = typer.Argument(
        None, help="A plan saved with `dumont plan -out FILE` (default: the current state)."
    ),
    files: FilesOpt = None,
    output: OutputOpt = OutputFormat.table,
    state: StateOpt = None,
) -> None:
    """Show a saved plan, or the managed resources with their live status."""
    from dumont_plan.planfile import read_plan_file
    from dumont_plan.render import plan_json, render_plan

    if planfile is not None:
        saved = read_plan_file(planfile)
        if output is OutputFormat.json:
            emit_json(plan_json(saved))
        else:
            console.print(render_plan(saved))
        return
    ledger = _load_ledger(state_path_for(None, state, files), None)
    statuses = _live_statuses(ctx, ledger) if ledger.state.resources else {}
    _print_state(ledger, statuses, output, with_status=True)


def _live_statuses(ctx: typer.Context, ledger: Ledger) -> dict[str, str]:
    from dumont_plan.kinds.registry import HANDLERS
    from dumont_plan.observe import kinds_of, observe

    client = _client(ctx)
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


def _print_state(
    ledger: Ledger, statuses: dict[str, str], output: OutputFormat, *, with_status: bool
) -> None:
    from dumont_plan.render import render_rows, state_rows

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


def explain(
    kind: str = typer.Argument(..., help="A kind: job or instance (or jobs, instances)."),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Print a kind's field table: what each field's change does (update, replace, ...)."""
    from dumont_plan.kinds.base import CLASS_HELP
    from dumont_plan.kinds.registry import handler_for
    from dumont_plan.render import render_fields

    handler = handler_for(kind)
    if output is OutputFormat.json:
        emit_json(
            {
                "kind": handler.kind,
                "section": handler.section,
                "fields": {
                    name: {
                        "class": cls.value,
                        "meaning": CLASS_HELP[cls],
                        "note": handler.notes.get(name),
                        "unordered": name in handler.unordered,
                    }
                    for name, cls in handler.fields.items()
                },
            }
        )
        return
    console.print(render_fields(handler))


# -- refresh / import / state ---------------------------------------------------------------


def refresh(
    ctx: typer.Context,
    files: FilesOpt = None,
    output: OutputOpt = OutputFormat.table,
    state: StateOpt = None,
) -> None:
    """Update the state from the live objects: record each status, mark the gone ones."""
    from dumont_plan.ledger import Ledger

    path = state_path_for(None, state, files)
    with Ledger.locked(path, None, command="dumont refresh") as ledger:
        if not ledger.exists:
            console.print(f"No state yet at {ledger.path} (nothing applied).")
            return
        statuses = _live_statuses(ctx, ledger)
        gone = []
        for address in sorted(ledger.state.resources):
            status = statuses.get(address, "gone")
            if status == "gone":
                gone.append(address)
            ledger.mark_status(address, status)
        ledger.save()
        _print_state(ledger, statuses, output, with_status=True)
    if gone and output is not OutputFormat.json:
        err_console.print(
            "Gone from the server: " + ", ".join(gone) + " (the next plan says what to do)."
        )


def import_(
    ctx: typer.Context,
    address: str = typer.Argument(..., help="The spec address to manage it as, e.g. job.train."),
    remote_id: str = typer.Argument(..., help="The live object's id, e.g. job_1a2b3c4d or 123."),
    files: FilesOpt = None,
    var: VarsOpt = None,
    var_file: VarFilesOpt = None,
    state: StateOpt = None,
) -> None:
    """Adopt an existing live object into the state as ADDR (it must be in the spec)."""
    from dumont_plan.errors import NotFoundError
    from dumont_plan.kinds.registry import handler_for
    from dumont_plan.kinds.resolve import outputs_from
    from dumont_plan.ledger import Ledger
    from dumont_plan.plan.fingerprint import desired_record
    from dumont_plan.plan.model import UNKNOWN, Observed
    from dumont_plan.spec.refs import Ref, parse_address

    stack = load_from_options(files, var, var_file)
    try:
        address = parse_address(address)
    except ValueError as exc:
        raise DumontError(f"import {address}: {exc}") from None
    resource = stack.resources.get(address)
    if resource is None:
        raise DumontError(
            f"import {address}: it is not in the spec",
            f"declare it first (e.g. under {address.split('.')[0]}s:), then import",
        )
    handler = handler_for(resource.kind)
    path = state_path_for(stack, state, files)
    with Ledger.locked(path, stack.project, command="dumont import") as ledger:
        if address in ledger.state.resources:
            raise DumontError(
                f"import {address}: it is already managed (id "
                f"{ledger.state.resources[address].remote_id})",
                f"`dumont state rm {address}` first to import another object",
            )
        owner = next(
            (
                a
                for a, e in ledger.state.resources.items()
                if e.kind == resource.kind and e.remote_id == remote_id
            ),
            None,
        )
        if owner is not None:
            raise DumontError(f"import {address}: {remote_id} is already managed as {owner}")
        client = _client(ctx)
        try:
            live = handler.get(client, remote_id)
        except NotFoundError:
            raise DumontError(
                f"import {address}: no {handler.kind} {remote_id} on the server",
                f"`dumont {handler.kind} list` shows the ids",
            ) from None
        finally:
            client.close()
        outputs = outputs_from(ledger.state, Observed())
        hashes = secret_hashes(stack, ledger.state.salt)

        def resolve(ref: Ref) -> Any:
            value = outputs.get(ref.address, {}).get(ref.attr or "id")
            return UNKNOWN if value is None else value

        record = desired_record(
            handler,
            resource,
            stack.project,
            resolve=resolve,
            secret_hash=lambda name: hashes.get(name, "missing"),
            salt=ledger.state.salt,
        )
        ledger.record(
            address,
            kind=resource.kind,
            remote_id=handler.live_id(live),
            remote_name=handler.live_name(live),
            record=record,
            status=handler.status(live),
        )
    console.print(
        f"Imported {handler.kind} {remote_id} ({handler.status(live)}) as {address}. "
        "The next plan compares it with the spec."
    )


state_app = typer.Typer(help="Inspect and edit the state (the ledger).", no_args_is_help=True)


@state_app.command("list")
def state_list(
    files: FilesOpt = None,
    output: OutputOpt = OutputFormat.table,
    state: StateOpt = None,
) -> None:
    """List the managed addresses and their remote ids (no API call)."""
    ledger = _load_ledger(state_path_for(None, state, files), None)
    _print_state(ledger, {}, output, with_status=False)


@state_app.command("rm")
def state_rm(
    address: str = typer.Argument(..., help="The address to stop managing."),
    files: FilesOpt = None,
    state: StateOpt = None,
) -> None:
    """Stop managing ADDR: drop it from the state; the live object is left as it is."""
    from dumont_plan.ledger import Ledger
    from dumont_plan.spec.refs import parse_address

    try:
        address = parse_address(address)
    except ValueError as exc:
        raise DumontError(f"state rm {address}: {exc}") from None
    path = state_path_for(None, state, files)
    with Ledger.locked(path, None, command="dumont state rm") as ledger:
        if address not in ledger.state.resources:
            raise DumontError(
                f"state rm {address}: it is not in the state",
                "`dumont state list` shows what is there",
            )
        entry = ledger.remove(address)
    remote = f" ({entry.kind} {entry.remote_id})" if entry and entry.remote_id else ""
    console.print(f"Removed {address}{remote} from the state; the live object is untouched.")


@state_app.command("mv")
def state_mv(
    old: str = typer.Argument(..., help="The address in the state now."),
    new: str = typer.Argument(..., help="The address to manage it as."),
    files: FilesOpt = None,
    state: StateOpt = None,
) -> None:
    """Rename ADDR in the state (after renaming it in the spec), without a replace."""
    from dumont_plan.ledger import Ledger
    from dumont_plan.spec.refs import parse_address

    try:
        old, new = parse_address(old), parse_address(new)
    except ValueError as exc:
        raise DumontError(f"state mv: {exc}") from None
    path = state_path_for(None, state, files)
    with Ledger.locked(path, None, command="dumont state mv") as ledger:
        ledger.move(old, new)
    console.print(f"Moved {old} to {new} in the state.")


def force_unlock(
    files: FilesOpt = None,
    state: StateOpt = None,
    force: bool = typer.Option(
        False, "--force", help="Remove the lock even if its holder still runs."
    ),
) -> None:
    """Remove a stale lock left by a dumont process that is gone."""
    from dumont_plan.ledger import force_unlock as unlock

    path = state_path_for(None, state, files)
    result = unlock(path, force=force)
    if not result.removed:
        console.print("The state is not locked.")
        return
    holder = result.holder
    who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
    if result.forced:
        console.print(f"Removed the lock held by {who}; that process may still be running.")
    else:
        console.print(f"Removed a stale lock left by {who} ({holder.get('command', '?')}).")


def register(app: typer.Typer) -> None:
    """Add the declarative read-side commands to the top-level app."""
    app.command("plan")(plan)
    app.command("show")(show)
    app.command("explain")(explain)
    app.command("refresh")(refresh)
    app.command("import")(import_)
    app.add_typer(state_app, name="state")
    app.command("force-unlock")(force_unlock)
