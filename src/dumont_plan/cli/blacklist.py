"""`dumont blacklist list|add|remove|check`: machines the wizard and jobs must never rent.

Entries are `manual` (added here) or `auto` (after repeated failures, see `dumont history`).
"""

from __future__ import annotations

import typer

from dumont_plan.cli.output import (
    OutputFormat,
    OutputOpt,
    console,
    emit_json,
    print_fields,
    print_table,
)
from dumont_plan.cli.session import open_client
from dumont_plan.errors import DumontError, NotFoundError

app = typer.Typer(
    help=(
        "Blacklisted machines: the wizard race and jobs never rent them.\n\n"
        "Machine ids are the `MACHINE` column of `dumont instance offers`."
    ),
    no_args_is_help=True,
)

ProviderArg = typer.Argument(..., help="Provider id, e.g. vast.")
MachineArg = typer.Argument(..., help="Machine (host) id, as in `dumont instance offers`.")
COLUMNS = (
    "provider",
    "machine_id",
    "blacklist_type",
    "reason",
    "gpu_name",
    "blacklisted_at",
    "expires_at",
)
TYPES = ("auto", "manual", "temporary")


@app.command(
    "list",
    epilog=(
        "Examples:\n\n  dumont blacklist list\n\n"
        "  dumont blacklist list --type=manual --output json"
    ),
)
def list_entries(
    ctx: typer.Context,
    provider: str | None = typer.Option(None, "--provider", "-p", help="Only this provider."),
    blacklist_type: str | None = typer.Option(
        None, "--type", help="Only auto, manual or temporary entries."
    ),
    include_expired: bool = typer.Option(False, "--all", help="Also expired entries."),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """List the blacklisted machines."""
    if blacklist_type is not None and blacklist_type not in TYPES:
        raise DumontError(
            f"blacklist list: type {blacklist_type!r} is unknown", f"use one of: {', '.join(TYPES)}"
        )
    entries = open_client(ctx).blacklist.list(
        provider=provider, blacklist_type=blacklist_type, include_expired=include_expired or None
    )
    if output is OutputFormat.json:
        emit_json([e.raw for e in entries])
        return
    print_table((e.raw for e in entries), COLUMNS)


@app.command(
    epilog=(
        "Examples:\n\n"
        '  dumont blacklist add vast 12345 "boots fail"\n\n'
        '  dumont blacklist add vast 12345 "slow disk" --hours=24'
    )
)
def add(
    ctx: typer.Context,
    provider: str = ProviderArg,
    machine_id: str = MachineArg,
    reason: str = typer.Argument(..., help="Why (shown in the list)."),
    hours: int | None = typer.Option(
        None, "--hours", help="Blacklist for this many hours (default: for good).", min=1
    ),
    gpu_name: str | None = typer.Option(None, "--gpu", help="The machine's GPU, for the list."),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Blacklist a machine (adding it again updates the entry)."""
    if not reason.strip():
        raise DumontError("blacklist add: the reason is empty", 'say why, e.g. "boots fail"')
    entry = open_client(ctx).blacklist.add(
        provider, machine_id, reason, duration_hours=hours, gpu_name=gpu_name
    )
    if output is OutputFormat.json:
        emit_json(entry.raw)
        return
    until = f" until {entry.expires_at}" if entry.expires_at else ""
    console.print(f"Blacklisted {provider}:{machine_id}{until}: {reason}", markup=False)


@app.command(epilog="Examples:\n\n  dumont blacklist remove vast 12345")
def remove(
    ctx: typer.Context,
    provider: str = ProviderArg,
    machine_id: str = MachineArg,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Take a machine off the blacklist."""
    try:
        answer = open_client(ctx).blacklist.remove(provider, machine_id)
    except NotFoundError as exc:
        raise DumontError(
            f"machine {provider}:{machine_id} is not blacklisted", "see `dumont blacklist list`"
        ) from exc
    if output is OutputFormat.json:
        emit_json(answer)
        return
    console.print(f"Removed {provider}:{machine_id} from the blacklist.", markup=False)


@app.command(epilog="Examples:\n\n  dumont blacklist check vast 12345")
def check(
    ctx: typer.Context,
    provider: str = ProviderArg,
    machine_id: str = MachineArg,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Whether a machine is blacklisted, and why."""
    answer = open_client(ctx).blacklist.check(provider, machine_id)
    if output is OutputFormat.json:
        emit_json(answer.raw)
        return
    if not answer.is_blacklisted:
        console.print(f"{provider}:{machine_id} is not blacklisted.", markup=False)
        return
    console.print(f"{provider}:{machine_id} is blacklisted.", markup=False)
    if answer.info is not None:
        info = answer.info.raw
        print_fields(info, [k for k in COLUMNS if k in info] + ["failure_rate", "is_active"])
