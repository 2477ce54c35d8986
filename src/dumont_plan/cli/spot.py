"""`dumont spot ...`: templates, spot deployments with failover, interruptions and the market.

The sprint's lines work as written (`dumont spot deploy --template=<id> --max-price=0.5
--gpu=RTX4090`; GPU names match the market's spelling whatever the case and spaces). A spot
instance is named by its instance id, which changes when it fails over (`dumont spot list`
shows the current one). Listing and showing commands take `--output json`.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from dumont_plan.cli import durations
from dumont_plan.cli.output import (
    OutputFormat,
    OutputOpt,
    StatusLine,
    console,
    emit_json,
    err_console,
    print_table,
)
from dumont_plan.cli.session import open_client, resolve_target
from dumont_plan.cli.spot_market import resolve_names
from dumont_plan.cli.spot_templates import template_app
from dumont_plan.cli.spot_view import (
    LIST_COLUMNS,
    about_instance,
    access_text,
    list_row,
    money,
    parse_instance_id,
    print_pricing,
    print_status,
    reworded,
    state_text,
    wait_active,
)
from dumont_plan.errors import DumontError

app = typer.Typer(
    help=(
        "Spot instances with automatic failover: templates, deploy, interruptions, pricing.\n\n"
        "A template snapshots an instance's workspace; a deployment bids for a spot machine, "
        "restores the snapshot there and, when the market takes the machine back, moves to a "
        "new one with the last synced workspace (`auto_failover`)."
    ),
    no_args_is_help=True,
)
app.add_typer(template_app, name="template")

MAX_PRICE_RANGE = (0.01, 10.0)  # DeploySpotRequest.max_price

IdArg = typer.Argument(
    ..., metavar="INSTANCE_ID", help="Spot instance id (see `dumont spot list`)."
)
WaitTimeoutOpt = typer.Option(
    "5m",
    "--wait-timeout",
    help="Stop waiting after this long (30s, 15m, 2h; a bare number is seconds; exit 4).",
    metavar="DURATION",
    parser=durations.seconds,
)


def check_max_price(value: float, where: str) -> float:
    low, high = MAX_PRICE_RANGE
    if not low <= value <= high:
        raise DumontError(
            f"{where}: --max-price {value:g} is out of range", f"use {low:g}-{high:g} ($/h)"
        )
    return value


@app.command(
    epilog=(
        "Bids at the cheapest offer's minimum bid that is at most --max-price, restores the "
        "template's workspace there and waits until it is active on a machine that runs "
        "(--no-wait: return at once).\n\n"
        "Examples:\n\n"
        "  dumont spot deploy --template=spot_tpl_12_1733300000\n\n"
        "  dumont spot deploy --template=spot_tpl_12_1733300000 --max-price=0.5 --gpu=RTX4090\n\n"
        "  dumont spot deploy --template=spot_tpl_12_1733300000 --no-auto-failover --output json"
    )
)
def deploy(
    ctx: typer.Context,
    template: str = typer.Option(
        ..., "--template", "-t", help="Template id (see `dumont spot template list`)."
    ),
    max_price: float = typer.Option(1.0, "--max-price", help="Highest bid in $/h (0.01-10)."),
    gpu: str | None = typer.Option(
        None, "--gpu", help='GPU model, e.g. RTX4090 or "RTX 4090" (default: the cheapest).'
    ),
    auto_failover: bool = typer.Option(
        True,
        "--auto-failover/--no-auto-failover",
        help="Move to a new spot machine when this one is interrupted.",
    ),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until it is active."),
    wait_timeout: float = WaitTimeoutOpt,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Deploy a spot instance from a template."""
    where = "spot deploy"
    if not template.strip():
        raise DumontError(f"{where}: --template is empty", "see `dumont spot template list`")
    check_max_price(max_price, where)
    client = open_client(ctx)
    gpu_name, _ = resolve_names(client, where, gpu=gpu)
    with StatusLine(err_console) as line:
        if line.live:  # a spinner on a terminal; no line before a possible one-line error
            line.update(f"Deploying template {template.strip()} (bid at most {money(max_price)})")
        with reworded(
            where,
            f"no template {template.strip()}",
            "see yours with `dumont spot template list`",
            "raise --max-price or try another --gpu (`dumont spot pricing`)",
        ):
            spot = client.spot.deploy(
                template.strip(),
                max_price=max_price,
                gpu_preference=gpu_name,
                auto_failover=auto_failover,
            )
    if wait:
        spot = wait_active(client, spot.instance_id, wait_timeout, where)
    if output is OutputFormat.json:
        emit_json(spot.raw)
        return
    text = f"Deployed spot instance {spot.instance_id}"
    details = [d for d in (spot.gpu_name, spot.region) if d]
    if details:
        text += f" ({', '.join(details)})"
    if spot.bid_price is not None:
        text += f" at a bid of {money(spot.bid_price)}"
    restored = spot.raw.get("snapshot_restored")
    if restored is not None:
        text += "; workspace restored" if restored else "; workspace NOT restored"
    console.print(text + ".", markup=False)
    access = access_text(spot)
    if access:
        console.print(access, markup=False)


@app.command(epilog="Examples:\n\n  dumont spot status 12\n\n  dumont spot status 12 --output json")
def status(
    ctx: typer.Context, instance_id: str = IdArg, output: OutputOpt = OutputFormat.table
) -> None:
    """Show a spot instance: state, bid, failovers, SSH."""
    number = parse_instance_id(instance_id, "spot status")
    with about_instance(number, "spot status"):
        spot = open_client(ctx).spot.status(number)
    if output is OutputFormat.json:
        emit_json(spot.raw)
        return
    print_status(spot)


@app.command("list", epilog="Examples:\n\n  dumont spot list\n\n  dumont spot list --output json")
def list_instances(ctx: typer.Context, output: OutputOpt = OutputFormat.table) -> None:
    """List your spot instances (one API call)."""
    found = open_client(ctx).spot.instances()
    if output is OutputFormat.json:
        emit_json({"instances": [s.raw for s in found], "count": len(found)})
        return
    print_table((list_row(s) for s in found), LIST_COLUMNS)


@app.command(
    epilog=(
        "Regions are the offer search's words: a country code (DE), a continent (EU, NA, AS), "
        "US, or global.\n\n"
        "Examples:\n\n"
        "  dumont spot pricing\n\n"
        "  dumont spot pricing --region=US --gpu=RTX4090\n\n"
        "  dumont spot pricing --region=EU --output json"
    )
)
def pricing(
    ctx: typer.Context,
    region: str = typer.Option("global", "--region", help="US, EU, a country code, global."),
    gpu: str | None = typer.Option(None, "--gpu", help="Only this GPU model, e.g. RTX4090."),
    include_all: bool = typer.Option(
        False, "--all", help="Also machines the market flags as unstable."
    ),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """The live spot market: cheapest and average bid, savings vs on-demand, top offers."""
    client = open_client(ctx)
    gpu_name, checked = resolve_names(client, "spot pricing", gpu=gpu, region=region)
    found = client.spot.pricing(
        region=checked, gpu_name=gpu_name, include_all=True if include_all else None
    )
    if output is OutputFormat.json:
        emit_json(found.raw)
        return
    print_pricing(found)


@app.command(
    epilog=(
        "Moves the deployment to a new spot machine now, restoring its last synced workspace, "
        "and deletes the old machine. The instance id changes: the new one is printed.\n\n"
        "Examples:\n\n  dumont spot failover 12\n\n  dumont spot failover 12 --output json"
    )
)
def failover(
    ctx: typer.Context,
    instance_id: str = IdArg,
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until the new one is active."),
    wait_timeout: float = WaitTimeoutOpt,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Fail a spot instance over to a new machine (manual failover)."""
    where = "spot failover"
    number = parse_instance_id(instance_id, where)
    client = open_client(ctx)
    with StatusLine(err_console) as line, about_instance(number, where):
        if line.live:
            line.update(f"Failing over spot instance {number}")
        answer = client.spot.failover(number)
    new_id = answer.new_instance_id or answer.instance_id
    if new_id is None or not str(new_id).isdigit() or int(new_id) == number:
        raise DumontError(
            f"{where}: the server did not say which instance replaced {number}",
            "find it with `dumont spot list`",
        )
    spot = (
        wait_active(client, int(new_id), wait_timeout, where)
        if wait
        else client.spot.status(int(new_id))
    )
    if output is OutputFormat.json:
        emit_json({**answer.raw, "status_of_new": spot.raw})
        return
    console.print(f"Failed over spot instance {number} -> {spot.instance_id}.", markup=False)
    console.print(state_text(spot), markup=False)


def _simple(ctx: typer.Context, instance_id: str, action: str, output: OutputFormat) -> None:
    where = f"spot {action}"
    number = parse_instance_id(instance_id, where)
    client = open_client(ctx)
    answer: dict[str, Any] | None
    with about_instance(number, where):
        if action == "interrupt":
            answer = client.spot.interrupt(number)
        elif action == "stop":
            answer = client.spot.stop(number)
        else:
            answer = client.spot.delete(number)
    if output is OutputFormat.json:
        emit_json(answer)
        return
    words = {
        "interrupt": "Interrupted spot instance {n} (as the market would).",
        "stop": "Stopped spot instance {n}: no more automatic failovers.",
        "delete": "Deleted spot instance {n}.",
    }
    if action == "interrupt" and answer and answer.get("auto_failover"):
        words["interrupt"] += " It fails over to a new machine; watch it with `dumont spot list`."
    console.print(words[action].format(n=number), markup=False)


@app.command(
    epilog=(
        "Chaos testing: the machine is taken back as on a real preemption (its processes die). "
        "With auto_failover the control plane moves the deployment to a new machine within one "
        "reconciler tick; watch it with `dumont spot list`.\n\n"
        "Examples:\n\n  dumont spot interrupt 12"
    )
)
def interrupt(
    ctx: typer.Context, instance_id: str = IdArg, output: OutputOpt = OutputFormat.table
) -> None:
    """Interrupt a spot instance now, as the market does when outbid."""
    _simple(ctx, instance_id, "interrupt", output)


@app.command(epilog="Examples:\n\n  dumont spot stop 12")
def stop(
    ctx: typer.Context, instance_id: str = IdArg, output: OutputOpt = OutputFormat.table
) -> None:
    """Stop watching a spot instance: state `stopped`, no automatic failover."""
    _simple(ctx, instance_id, "stop", output)


@app.command(epilog="Examples:\n\n  dumont spot delete 12")
def delete(
    ctx: typer.Context, instance_id: str = IdArg, output: OutputOpt = OutputFormat.table
) -> None:
    """Delete a spot deployment (no prompt)."""
    _simple(ctx, instance_id, "delete", output)


@app.command(
    epilog=(
        "The page is served by the control plane; sign in with the same account.\n\n"
        "Examples:\n\n  dumont spot dashboard\n\n  dumont spot dashboard --open"
    )
)
def dashboard(
    ctx: typer.Context,
    open_browser: bool = typer.Option(
        False, "--open", help="Also open it in a browser (only on a terminal)."
    ),
) -> None:
    """Print the URL of the interruption dashboard (charts of interruptions and spend)."""
    _, url = resolve_target(ctx)
    page = url.rstrip("/") + "/dashboard"
    console.print(page, markup=False, soft_wrap=True)
    if not open_browser:
        return
    if not sys.stdout.isatty():
        err_console.print("(not a terminal: not opening a browser)", markup=False)
        return
    import webbrowser

    webbrowser.open(page)
