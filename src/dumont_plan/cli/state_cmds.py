"""State commands: refresh, import, state list|rm|mv|push|pull, force-unlock (registered by
declarative).

Each command that writes the state holds its lock for the whole command, so it never races an
apply; `state list` only reads. The state is where the spec's `backend:` says (cli/backend.py):
`state push` copies the local file to the remote backend, `state pull` the other way.
"""

from __future__ import annotations

import contextlib
import sys

import typer

from dumont_plan.cli.output import OutputFormat, OutputOpt, console, err_console
from dumont_plan.cli.planning import (
    StateOpt,
    open_api,
    open_state,
    print_state,
    read_state,
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

    with contextlib.closing(open_state(ctx, None, state, files)) as backend:
        refreshed = refresh_state(lambda: open_api(ctx), backend)
    if not refreshed.ledger.exists:
        console.print(f"No state yet at {refreshed.ledger.where} (nothing applied).")
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
    with contextlib.closing(open_state(ctx, stack, state, files)) as backend:
        imported = import_resource(lambda: open_api(ctx), stack, backend, address, remote_id)
    console.print(
        f"Imported {imported.kind} {imported.remote_id} ({imported.status}) as "
        f"{imported.address}. The next plan compares it with the spec."
    )


state_app = typer.Typer(help="Inspect and edit the state (the ledger).", no_args_is_help=True)


@state_app.command("list")
def state_list(
    ctx: typer.Context,
    files: FilesOpt = None,
    output: OutputOpt = OutputFormat.table,
    state: StateOpt = None,
) -> None:
    """List the managed addresses and their remote ids (no API call but the remote state's)."""
    ledger = read_state(ctx, None, state, files)
    print_state(ledger, {}, output, with_status=False)


@state_app.command("rm")
def state_rm(
    ctx: typer.Context,
    address: str = typer.Argument(..., help="The address to stop managing."),
    files: FilesOpt = None,
    state: StateOpt = None,
) -> None:
    """Stop managing ADDR: drop it from the state; the live object is left as it is."""
    from dumont_plan.spec.refs import parse_address

    try:
        address = parse_address(address)
    except ValueError as exc:
        raise DumontError(f"state rm {address}: {exc}") from exc
    backend = open_state(ctx, None, state, files)
    with contextlib.closing(backend), backend.locked(None, command="dumont state rm") as ledger:
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
    ctx: typer.Context,
    old: str = typer.Argument(..., help="The address in the state now."),
    new: str = typer.Argument(..., help="The address to manage it as."),
    files: FilesOpt = None,
    state: StateOpt = None,
) -> None:
    """Rename ADDR in the state (after renaming it in the spec), without a replace."""
    from dumont_plan.spec.refs import parse_address

    try:
        old, new = parse_address(old), parse_address(new)
    except ValueError as exc:
        raise DumontError(f"state mv: {exc}") from exc
    backend = open_state(ctx, None, state, files)
    with contextlib.closing(backend), backend.locked(None, command="dumont state mv") as ledger:
        ledger.move(old, new)
    console.print(f"Moved {old} to {new} in the state.")


def _confirm(question: str, auto_approve: bool) -> None:
    """Ask `question`; only `yes` goes on (without a terminal: pass --auto-approve)."""
    if auto_approve:
        return
    if not sys.stdin.isatty():
        raise DumontError(
            "this needs a confirmation and cannot ask for it (stdin is not a terminal)",
            "pass -y/--auto-approve",
        )
    try:
        answer = input(f"{question} Only 'yes' will be accepted: ")
    except EOFError:
        answer = ""
    if answer.strip() != "yes":
        raise DumontError("cancelled: nothing was changed", "answer exactly `yes` to go on")


AutoApproveOpt = typer.Option(
    False, "--auto-approve", "-y", help="Go on without asking for confirmation."
)


@state_app.command("push")
def state_push(
    ctx: typer.Context,
    files: FilesOpt = None,
    state: StateOpt = None,
    auto_approve: bool = AutoApproveOpt,
) -> None:
    """Copy the local state file to the remote backend (the spec's `backend: http`, else the
    Dumont API's own state), e.g. when a team moves to remote state. A remote state that is
    another one (lineage) or newer (serial) is refused: nothing is merged."""
    from dumont_plan.cli.backend import open_remote, resolve
    from dumont_plan.state.backend import push_state
    from dumont_plan.state.ledger import Ledger

    resolved = resolve(ctx, None, files)
    ledger = Ledger.load(state or resolved.local_path, resolved.project)
    if not ledger.exists:
        raise DumontError(
            f"there is no local state at {ledger.where} to push",
            "pass --state PATH to name the file",
        )
    remote = open_remote(ctx, resolved)
    with contextlib.closing(remote):
        _confirm(
            f"Copy the local state {ledger.where} ({len(ledger.state.resources)} resources) "
            f"to {remote.where}?",
            auto_approve,
        )
        before, after = push_state(ledger, remote, ledger.state.project or None)
    was = f" (it was at serial {before})" if before else ""
    console.print(
        f"Pushed {len(ledger.state.resources)} resources to {remote.where}: serial {after}{was}. "
        f"The local file {ledger.where} is no longer used with `backend: http`; keep it as a "
        "backup or remove it."
    )


@state_app.command("pull")
def state_pull(
    ctx: typer.Context,
    files: FilesOpt = None,
    state: StateOpt = None,
    auto_approve: bool = AutoApproveOpt,
) -> None:
    """Copy the remote state into the local state file (`--state`, else .dumont/state.json),
    e.g. to leave remote state. A local file that is another state or newer is refused."""
    from dumont_plan.cli.backend import open_remote, resolve
    from dumont_plan.state.backend import pull_state

    resolved = resolve(ctx, None, files)
    path = state or resolved.local_path
    remote = open_remote(ctx, resolved)
    with contextlib.closing(remote):
        _confirm(f"Copy the remote state at {remote.where} into {path}?", auto_approve)
        before, after = pull_state(remote, path, resolved.project)
    was = f" (it was at serial {before})" if before else ""
    console.print(f"Pulled the remote state into {path}: serial {after}{was}.")


def force_unlock(
    ctx: typer.Context,
    lock_id: str | None = typer.Argument(
        None,
        metavar="ID",
        help="The lock ID a `state is locked by ...` message shows (needed for a remote state).",
    ),
    files: FilesOpt = None,
    state: StateOpt = None,
    force: bool = typer.Option(
        False, "--force", help="Local state: remove the lock even if its holder still runs."
    ),
    auto_approve: bool = AutoApproveOpt,
) -> None:
    """Remove a stale lock left by a dumont run that is gone (a remote lock: by its ID)."""
    backend = open_state(ctx, None, state, files)
    with contextlib.closing(backend):
        if backend.kind != "local":
            _confirm(
                f"Remove the lock {lock_id} of the state at {backend.where}? Two runs could "
                "then write it at once if its holder still runs.",
                auto_approve or not lock_id,  # without an ID, the backend refuses anyway
            )
        result = backend.force_unlock(lock_id, force=force)
    if not result.removed:
        console.print("The state is not locked.")
        return
    holder = result.holder
    if backend.kind != "local":
        console.print(f"Removed the lock {lock_id} of the state at {backend.where}.")
        return
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
