"""State commands: refresh, import, state list|rm|mv, force-unlock (registered by declarative).

Each command that writes the state holds its lock for the whole command, so it never races an
apply; `state list` only reads.
"""

from __future__ import annotations

import typer

from dumont_plan.cli.output import OutputFormat, OutputOpt, console, err_console
from dumont_plan.cli.planning import (
    StateOpt,
    load_ledger,
    open_api,
    print_state,
    state_path_for,
)
from dumont_plan.cli.spec_cmds import FilesOpt, VarFilesOpt, VarsOpt, load_from_options
from dumont_plan.errors import DumontError


def refresh(
    ctx: typer.Context,
    files: FilesOpt = None,
    output: OutputOpt = OutputFormat.table,
    state: StateOpt = None,
) -> None:
    """Update the state from the live objects: record each status, mark the gone ones."""
    from dumont_plan.apply.workflow import refresh_state

    refreshed = refresh_state(lambda: open_api(ctx), state_path_for(None, state, files))
    if not refreshed.ledger.exists:
        console.print(f"No state yet at {refreshed.ledger.path} (nothing applied).")
        return
    print_state(refreshed.ledger, refreshed.statuses, output, with_status=True)
    if refreshed.gone and output is not OutputFormat.json:
        err_console.print(
            "Gone from the server: "
            + ", ".join(refreshed.gone)
            + " (the next plan says what to do)."
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
    from dumont_plan.apply.workflow import import_resource

    stack = load_from_options(files, var, var_file)
    imported = import_resource(
        lambda: open_api(ctx), stack, state_path_for(stack, state, files), address, remote_id
    )
    console.print(
        f"Imported {imported.kind} {imported.remote_id} ({imported.status}) as "
        f"{imported.address}. The next plan compares it with the spec."
    )


state_app = typer.Typer(help="Inspect and edit the state (the ledger).", no_args_is_help=True)


@state_app.command("list")
def state_list(
    files: FilesOpt = None,
    output: OutputOpt = OutputFormat.table,
    state: StateOpt = None,
) -> None:
    """List the managed addresses and their remote ids (no API call)."""
    ledger = load_ledger(state_path_for(None, state, files), None)
    print_state(ledger, {}, output, with_status=False)


@state_app.command("rm")
def state_rm(
    address: str = typer.Argument(..., help="The address to stop managing."),
    files: FilesOpt = None,
    state: StateOpt = None,
) -> None:
    """Stop managing ADDR: drop it from the state; the live object is left as it is."""
    from dumont_plan.spec.refs import parse_address
    from dumont_plan.state.ledger import Ledger

    try:
        address = parse_address(address)
    except ValueError as exc:
        raise DumontError(f"state rm {address}: {exc}") from exc
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
    from dumont_plan.spec.refs import parse_address
    from dumont_plan.state.ledger import Ledger

    try:
        old, new = parse_address(old), parse_address(new)
    except ValueError as exc:
        raise DumontError(f"state mv: {exc}") from exc
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
    from dumont_plan.state.ledger import force_unlock as unlock

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
    app.command("refresh")(refresh)
    app.command("import")(import_)
    app.add_typer(state_app, name="state")
    app.command("force-unlock")(force_unlock)
