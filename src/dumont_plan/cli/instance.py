"""`dumont instance list|get|exec|pause|resume|delete|offers`: GPU machines and their offers.

The old CLI's `key=value` words work too (`dumont instance list status=running`). `paused` is
what people say; the provider reports `stopped` (contract quirk 16): `status=paused` asks for
`stopped` and the table shows `paused`. Every command takes `--output json` for scripts.
"""

from __future__ import annotations

import shlex
import sys
from typing import Any

import typer

from dumont_plan.cli import durations
from dumont_plan.cli.output import (
    OutputFormat,
    OutputOpt,
    console,
    emit_json,
    err_console,
    print_fields,
    print_table,
    split_key_values,
)
from dumont_plan.cli.session import complete_ids, open_client
from dumont_plan.client import DumontClient
from dumont_plan.client.instances import wire_status
from dumont_plan.errors import ConflictError, DumontError, NotFoundError, WaitInterrupted
from dumont_plan.wire import is_loopback
from dumont_plan.wire_models import Instance, Offer

app = typer.Typer(
    help=(
        "GPU instances: list, inspect, pause, resume, delete, and search offers.\n\n"
        "Create one with `dumont wizard deploy` (it races several offers and keeps the first "
        "that boots)."
    ),
    no_args_is_help=True,
)

LIST_STATUSES = ("running", "paused", "stopped", "loading", "created", "exited", "offline")
LIST_COLUMNS = ("id", "status", "gpu", "price", "location", "access", "label")
OFFER_COLUMNS = ("id", "gpu", "vram", "price", "net_down", "location", "reliability", "machine")


def complete_instance_id(incomplete: str) -> list[str]:
    """Shell completion of an instance id."""
    return complete_ids("/api/v1/instances", "id", incomplete)


IdArg = typer.Argument(
    ...,
    metavar="INSTANCE_ID",
    help="Instance id (see `dumont instance list`).",
    autocompletion=complete_instance_id,
)


def parse_id(value: str) -> int:
    """An instance id typed by a person; a clear error when it is not a whole number."""
    try:
        number = int(value.strip())
    except ValueError:
        number = -1
    if number < 0:
        raise DumontError(
            f"instance id {value!r} is not a number", "use an id from `dumont instance list`"
        )
    return number


def not_found(instance_id: int) -> DumontError:
    return DumontError(
        f"instance {instance_id} not found", "list yours with `dumont instance list`"
    )


def money(value: float | None) -> str:
    return f"${value:.3f}/h" if value is not None else "-"


def gpu_text(row: Instance | Offer) -> str:
    name = row.gpu_name or "-"
    count = row.num_gpus
    return f"{count}x {name}" if count is not None and count > 1 else name


def access_of(instance: Instance) -> str | None:
    """How to get a shell command into the instance: its `ssh` line, or, for a local control
    plane's sandbox (SSH endpoint on loopback: no SSH server listens there), `instance exec`."""
    host = instance.ssh_host or instance.public_ipaddr
    if host and is_loopback(str(host)):
        return f"dumont instance exec {instance.id} -- COMMAND"
    return instance.ssh_command


def instance_row(instance: Instance) -> dict[str, object]:
    """A table row of an instance: the status people know (`paused`), $/h, access."""
    return {
        "id": instance.id,
        "status": instance.display_status,
        "gpu": gpu_text(instance),
        "price": price_text(instance),
        "location": location_of(instance),
        "access": access_of(instance),
        "label": instance.label,
    }


def location_of(instance: Instance) -> str:
    """Where it runs: the geolocation (local control plane), else the region or country fields
    a provider object may carry; "-" when it has none (the real platform's instances)."""
    for value in (
        instance.geolocation,
        instance.raw.get("region"),
        instance.raw.get("country"),
        instance.raw.get("country_code"),
    ):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return "-"


def price_text(instance: Instance) -> str:
    """$/h as billed now: a paused instance costs its storage, not the machine's price."""
    if not instance.is_paused:
        return money(instance.dph_total)
    billed = instance.raw.get("billed_dph")
    if isinstance(billed, int | float) and not isinstance(billed, bool):
        return f"{money(float(billed))} (paused)"
    return "storage only (paused)"


def describe(instance: Instance) -> str:
    """`RTX 4090, $0.350/h` — a short description for messages."""
    return f"{gpu_text(instance)}, {money(instance.dph_total)}"


def fetch(client: DumontClient, instance_id: int) -> Instance:
    try:
        return client.instances.get(instance_id)
    except NotFoundError as exc:
        raise not_found(instance_id) from exc


@app.command(
    "list",
    epilog=(
        "Examples:\n\n"
        "  dumont instance list\n\n"
        "  dumont instance list status=running\n\n"
        "  dumont instance list --status=paused --output json"
    ),
)
def list_instances(
    ctx: typer.Context,
    words: list[str] | None = typer.Argument(
        None, metavar="[status=STATUS]", help="Old-style filter word.", show_default=False
    ),
    status: str | None = typer.Option(
        None,
        "--status",
        "-s",
        help="Only instances in this state: running, paused (= stopped), loading, …",
    ),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """List your instances (one API call)."""
    positionals, pairs = split_key_values(words or [], ["status"], "instance list")
    if positionals:
        raise DumontError(
            f"instance list: unexpected argument {positionals[0]!r}",
            "filter with status=running or --status=paused",
        )
    word_status = str(pairs["status"]) if "status" in pairs else None
    if status and word_status and wire_status(status) != wire_status(word_status):
        raise DumontError(
            f"instance list: status given twice ({word_status!r} and {status!r})", "give it once"
        )
    wanted = status or word_status
    if wanted is not None and wanted.strip().lower() not in LIST_STATUSES:
        raise DumontError(
            f"instance list: status {wanted!r} is unknown",
            f"use one of: {', '.join(LIST_STATUSES)}",
        )
    client = open_client(ctx)
    instances = client.instances.list(status=wanted)
    if output is OutputFormat.json:
        emit_json({"instances": [i.raw for i in instances], "count": len(instances)})
        return
    print_table((instance_row(i) for i in instances), LIST_COLUMNS)


@app.command(
    epilog="Examples:\n\n  dumont instance get 12\n\n  dumont instance get 12 --output json"
)
def get(
    ctx: typer.Context, instance_id: str = IdArg, output: OutputOpt = OutputFormat.table
) -> None:
    """Show one instance."""
    number = parse_id(instance_id)
    instance = fetch(open_client(ctx), number)
    if output is OutputFormat.json:
        emit_json(instance.raw)
        return
    # Every field the server sent (its own spelling), with the status people know first.
    raw = instance.raw
    shown = {
        **raw,
        "status": instance.display_status,
        "intended_status": raw.get("status"),
        "access": access_of(instance),
    }
    keys = ["id", "status", "intended_status", "actual_status", "gpu_name", "num_gpus"]
    keys += ["dph_total", "geolocation", "access", "label", "start_date"]
    keys += [k for k in raw if k not in keys and k not in ("ports",)]
    print_fields(shown, keys)


def _state_change(ctx: typer.Context, instance_id: str, action: str, output: OutputFormat) -> None:
    number = parse_id(instance_id)
    client = open_client(ctx)
    call = client.instances.pause if action == "pause" else client.instances.resume
    try:
        answer = call(number)
    except NotFoundError as exc:
        raise not_found(number) from exc
    if output is OutputFormat.json:
        emit_json(answer)
        return
    done = "Paused" if action == "pause" else "Resumed"
    message = answer.get("message") if isinstance(answer, dict) else None
    console.print(message or f"{done} instance {number}.", markup=False)


@app.command(
    epilog=(
        "Stops the instance's processes and keeps its disk; billing drops to storage.\n\n"
        "Examples:\n\n  dumont instance pause 12\n\n  dumont instance resume 12"
    )
)
def pause(
    ctx: typer.Context, instance_id: str = IdArg, output: OutputOpt = OutputFormat.table
) -> None:
    """Pause an instance (it shows as `paused`; the provider says `stopped`)."""
    _state_change(ctx, instance_id, "pause", output)


@app.command(
    "exec",
    epilog=(
        "What `ssh root@HOST CMD` does elsewhere: the local control plane's instances are "
        "sandboxes with no SSH server. The exit code is the command's.\n\n"
        "Examples:\n\n  dumont instance exec 12 -- nvidia-smi\n\n"
        "  dumont instance exec 12 -- 'cd /workspace && ls -la'"
    ),
)
def exec_command(
    ctx: typer.Context,
    instance_id: str = IdArg,
    command: list[str] = typer.Argument(
        ..., metavar="COMMAND...", help="The command (after `--`), run with bash -c."
    ),
    timeout: float = typer.Option(
        60.0,
        "--timeout",
        help="Kill it after this long (30s, 5m; a bare number is seconds; at most 10m).",
        metavar="DURATION",
        parser=durations.seconds,
    ),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Run a command in a running instance and print its output."""
    number = parse_id(instance_id)
    if not 0 < timeout <= EXEC_MAX_SECONDS:
        raise DumontError(f"instance exec: --timeout {timeout:g}s is not in 1s–10m")
    client = open_client(ctx)
    fetch(client, number)
    text = command[0] if len(command) == 1 else shlex.join(command)
    try:
        answer = client.instances.exec(number, text, timeout)
    except KeyboardInterrupt:
        raise WaitInterrupted(
            f"stopped waiting: the command may go on in instance {number} until its "
            f"--timeout ({timeout:g}s)",
            f"see what runs there: `dumont instance exec {number} -- ps aux`",
        ) from None
    except ConflictError as exc:
        raise DumontError(
            f"instance exec: instance {number} is not running", f"`dumont instance resume {number}`"
        ) from exc
    if output is OutputFormat.json:
        emit_json(answer)
    else:
        sys.stdout.write(str(answer.get("output") or ""))
        sys.stdout.flush()
        if answer.get("truncated"):
            err_console.print("(output cut at 1 MiB)", markup=False)
    if answer.get("timed_out"):
        raise DumontError(
            f"instance exec: the command was killed after {timeout:g}s", "raise --timeout"
        )
    code = answer.get("exit_code")
    if isinstance(code, int) and code != 0:
        raise typer.Exit(code if 0 < code < 256 else 1)


EXEC_MAX_SECONDS = 600


@app.command(epilog="Examples:\n\n  dumont instance resume 12")
def resume(
    ctx: typer.Context, instance_id: str = IdArg, output: OutputOpt = OutputFormat.table
) -> None:
    """Resume a paused instance."""
    _state_change(ctx, instance_id, "resume", output)


@app.command(
    epilog=(
        "Like `vastai destroy instance`, it asks no confirmation and prints what it deleted.\n\n"
        "Examples:\n\n  dumont instance delete 12"
    )
)
def delete(
    ctx: typer.Context, instance_id: str = IdArg, output: OutputOpt = OutputFormat.table
) -> None:
    """Delete an instance and its disk (no prompt)."""
    number = parse_id(instance_id)
    client = open_client(ctx)
    instance = fetch(client, number)
    try:
        answer = client.instances.delete(number)
    except NotFoundError as exc:
        raise not_found(number) from exc
    if output is OutputFormat.json:
        emit_json({"deleted": instance.raw, "answer": answer})
        return
    console.print(f"Deleted instance {number} ({describe(instance)}).", markup=False)


def offer_row(offer: Offer) -> dict[str, object]:
    gpu_ram = offer.gpu_ram
    speed = offer.inet_down
    reliability = offer.reliability
    flags = []
    if offer.is_blacklisted:
        flags.append("blacklisted")
    status = offer.reliability_status
    if status and status != "unknown":
        flags.append(status)
    return {
        "id": offer.id,
        "gpu": gpu_text(offer),
        "vram": f"{gpu_ram:g} GB" if gpu_ram is not None else None,
        "price": money(offer.dph_total),
        "net_down": f"{speed:,.0f} Mbps" if speed is not None else None,
        "location": offer.geolocation,
        "reliability": (
            f"{reliability:.2f}" + (f" ({', '.join(flags)})" if flags else "")
            if reliability is not None
            else None
        ),
        "machine": offer.machine_id,
    }


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DumontError(f"instance offers: {name} {value!r} is not a number", "e.g. 1.5")
    return float(value)


@app.command(
    epilog=(
        "Cheapest first. --region takes the offer search's vocabulary: a country code (DE), "
        "a continent (EU, NA, AS) or global.\n\n"
        "Examples:\n\n"
        "  dumont instance offers\n\n"
        '  dumont instance offers --gpu="RTX 4090" --max-price=1.0 --region=EU --limit=20\n\n'
        "  dumont instance offers --min-inet-down=4000 --output json"
    )
)
def offers(
    ctx: typer.Context,
    words: list[str] | None = typer.Argument(
        None,
        metavar="[KEY=VALUE]",
        help="Old-style words: gpu=, max_price=, region=, limit=.",
        show_default=False,
    ),
    gpu: str | None = typer.Option(None, "--gpu", "--gpu-name", help='GPU model, e.g. "RTX 4090".'),
    num_gpus: int | None = typer.Option(None, "--num-gpus", help="GPUs per machine (1-8).", min=0),
    max_price: float | None = typer.Option(None, "--max-price", help="Highest $/h."),
    region: str | None = typer.Option(None, "--region", help="EU, NA, AS, a country code, global."),
    min_inet_down: float | None = typer.Option(
        None, "--min-inet-down", help="Minimum download speed in Mbps."
    ),
    spot: bool = typer.Option(False, "--spot", help="Interruptible (spot) offers."),
    include_blacklisted: bool = typer.Option(
        False, "--include-blacklisted", help="Also show machines on your blacklist."
    ),
    limit: int = typer.Option(20, "--limit", "-n", help="At most this many offers (1-100).", min=1),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Search the GPU offers you can rent."""
    positionals, pairs = split_key_values(
        words or [],
        ["gpu", "gpu_name", "max_price", "region", "limit", "num_gpus"],
        "instance offers",
    )
    if positionals:
        raise DumontError(
            f"instance offers: unexpected argument {positionals[0]!r}",
            'use flags, e.g. --gpu="RTX 4090" --max-price=1.0',
        )
    gpu = gpu or pairs.get("gpu") or pairs.get("gpu_name")
    if "max_price" in pairs:
        max_price = _number(pairs["max_price"], "max_price")
    if max_price is not None and max_price <= 0:
        raise DumontError(
            f"instance offers: max price {max_price:g} must be above 0 ($/h)",
            "e.g. --max-price=1.0",
        )
    if "limit" in pairs:
        limit = int(_number(pairs["limit"], "limit"))
    if "num_gpus" in pairs:
        num_gpus = int(_number(pairs["num_gpus"], "num_gpus"))
    region = str(pairs["region"]) if "region" in pairs else region
    found = open_client(ctx).instances.offers(
        gpu_name=str(gpu) if gpu else None,
        num_gpus=num_gpus,
        max_price=max_price,
        region=None if region and region.lower() in ("global", "any", "all") else region,
        min_inet_down=min_inet_down,
        machine_type="interruptible" if spot else None,
        include_blacklisted=True if include_blacklisted else None,
        limit=min(limit, 100),
    )
    if output is OutputFormat.json:
        emit_json({"offers": [o.raw for o in found], "count": len(found)})
        return
    print_table((offer_row(o) for o in found), OFFER_COLUMNS)
