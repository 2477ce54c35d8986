"""`dumont history summary|list|stats|problematic|reliable`: what each machine attempt said.

Every create and boot of a machine is an attempt (a wizard race's cancelled losers are not
failures). Provider ids are the platform's (`vast`). `--output json` on every command.
"""

from __future__ import annotations

import typer

from dumont_plan.cli.output import OutputFormat, OutputOpt, emit_json, print_fields, print_table
from dumont_plan.cli.session import open_client
from dumont_plan.errors import DumontError, NotFoundError
from dumont_plan.wire_models import MachineStats

app = typer.Typer(
    help=(
        "Machine history: every attempt to rent and boot a machine, and what it says about "
        "each host (see also `dumont blacklist`)."
    ),
    no_args_is_help=True,
)

ProviderOpt = typer.Option(None, "--provider", "-p", help="Only this provider (e.g. vast).")
STATS_COLUMNS = (
    "provider",
    "machine_id",
    "gpu_name",
    "total_attempts",
    "success_rate",
    "reliability_status",
    "is_blacklisted",
)
ATTEMPT_COLUMNS = (
    "attempted_at",
    "provider",
    "machine_id",
    "gpu_name",
    "price_per_hour",
    "result",
    "instance_id",
    "failure_stage",
    "failure_reason",
)


def _hours(value: int | None, default: int) -> int:
    hours = default if value is None else value
    if not 1 <= hours <= 168:
        raise DumontError(f"--hours {hours} is out of range", "use 1-168 (one week)")
    return hours


def _rate(value: float | None) -> str | None:
    return f"{value:.0%}" if value is not None else None


def stats_row(stats: MachineStats) -> dict[str, object]:
    """Every field the server sent, with the success rate as a percentage."""
    return {**stats.raw, "success_rate": _rate(stats.success_rate)}


@app.command(
    epilog=(
        "Examples:\n\n  dumont history summary\n\n"
        "  dumont history summary --provider=vast --hours=24"
    )
)
def summary(
    ctx: typer.Context,
    provider: str | None = ProviderOpt,
    hours: int | None = typer.Option(
        None, "--hours", help="Look back this many hours (1-168, default 24)."
    ),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Totals of the last hours: attempts, success rate, failure stages."""
    data = open_client(ctx).history.summary(provider=provider, hours=_hours(hours, 24))
    if output is OutputFormat.json:
        emit_json(data.raw)
        return
    shown: dict[str, object] = {**data.raw, "success_rate": _rate(data.success_rate)}
    if isinstance(data.raw.get("failure_stages"), dict):
        stages = data.failure_stages
        shown["failure_stages"] = ", ".join(f"{k}: {v}" for k, v in stages.items()) or "-"
    print_fields(shown)


@app.command(
    "list",
    epilog=(
        "Examples:\n\n  dumont history list\n\n  dumont history list --provider=vast --hours=72\n\n"
        "  dumont history list --failed --output json"
    ),
)
def list_attempts(
    ctx: typer.Context,
    provider: str | None = ProviderOpt,
    hours: int | None = typer.Option(
        None, "--hours", help="Look back this many hours (1-168, default 72)."
    ),
    machine_id: str | None = typer.Option(
        None, "--machine", "--machine-id", help="Only this machine."
    ),
    failed: bool = typer.Option(False, "--failed", help="Only failures."),
    succeeded: bool = typer.Option(False, "--succeeded", help="Only successes."),
    limit: int = typer.Option(
        100, "--limit", "-n", help="At most this many (1-500).", min=1, max=500
    ),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Attempts of the last hours, newest first."""
    if failed and succeeded:
        raise DumontError("history list: --failed and --succeeded exclude each other", "give one")
    success_only = True if succeeded else (False if failed else None)
    attempts = open_client(ctx).history.attempts(
        provider=provider,
        machine_id=machine_id,
        success_only=success_only,
        hours=_hours(hours, 72),
        limit=limit,
    )
    if output is OutputFormat.json:
        emit_json([a.raw for a in attempts])
        return
    rows = ({**a.raw, "result": "ok" if a.success else "failed"} for a in attempts)
    print_table(rows, ATTEMPT_COLUMNS)


@app.command(epilog="Examples:\n\n  dumont history stats vast 12345")
def stats(
    ctx: typer.Context,
    provider: str = typer.Argument(..., help="Provider id, e.g. vast."),
    machine_id: str = typer.Argument(..., help="Machine (host) id, as in `instance offers`."),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """One machine's record: attempts, success rate, time to ready, blacklist."""
    try:
        data = open_client(ctx).history.stats(provider, machine_id)
    except NotFoundError as exc:
        raise DumontError(
            f"no history for machine {provider}:{machine_id}",
            "machines get a history once they were rented; see `dumont history list`",
        ) from exc
    if output is OutputFormat.json:
        emit_json(data.raw)
        return
    print_fields(stats_row(data))


def _stats_list(rows: list[MachineStats], output: OutputFormat) -> None:
    if output is OutputFormat.json:
        emit_json([r.raw for r in rows])
        return
    print_table((stats_row(r) for r in rows), STATS_COLUMNS)


@app.command(
    epilog=(
        "Examples:\n\n  dumont history problematic\n\n  dumont history problematic --provider=vast"
    )
)
def problematic(
    ctx: typer.Context,
    provider: str | None = ProviderOpt,
    min_attempts: int | None = typer.Option(None, "--min-attempts", help="Default 3.", min=1),
    limit: int | None = typer.Option(None, "--limit", "-n", help="Default 50.", min=1, max=200),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Machines that fail often (success rate at most 50 %)."""
    rows = open_client(ctx).history.problematic(
        provider=provider, min_attempts=min_attempts, limit=limit
    )
    _stats_list(rows, output)


@app.command(
    epilog="Examples:\n\n  dumont history reliable\n\n  dumont history reliable --provider=vast"
)
def reliable(
    ctx: typer.Context,
    provider: str | None = ProviderOpt,
    min_attempts: int | None = typer.Option(None, "--min-attempts", help="Default 5.", min=1),
    limit: int | None = typer.Option(None, "--limit", "-n", help="Default 50.", min=1, max=200),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Machines that boot reliably (success rate at least 80 %)."""
    rows = open_client(ctx).history.reliable(
        provider=provider, min_attempts=min_attempts, limit=limit
    )
    _stats_list(rows, output)
