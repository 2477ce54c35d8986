"""`dumont serverless enable|disable|status|list|wake|pricing|webhooks`: instances that pause
themselves when idle and wake on demand (contract §7.1, §7.2); `dumont serverless endpoint ...`
and `stats`: request-driven endpoints (§7.3, serverless_endpoint.py).

The sprint's command lines work as written, in both forms (`mode=spot` or `--mode=spot`):
serverless_input.py reads them. The webhook secret is never echoed: it comes from
`--webhook-secret`, `DUMONT_WEBHOOK_SECRET` or a hidden prompt (`--webhook-secret=-`).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from dumont_plan.cli.output import (
    OutputFormat,
    OutputOpt,
    StatusLine,
    console,
    emit_json,
    err_console,
    print_fields,
    print_table,
)
from dumont_plan.cli.serverless_endpoint import app as endpoint_app
from dumont_plan.cli.serverless_endpoint import stats as endpoint_stats
from dumont_plan.cli.serverless_input import (
    SECRET_ENV,
    check_secret,
    describe_policy,
    enable_body,
    parse_instance_id,
)
from dumont_plan.cli.serverless_view import (
    LIST_COLUMNS,
    WEBHOOK_COLUMNS,
    policy_row,
    print_pricing,
    status_fields,
    webhook_row,
)
from dumont_plan.cli.session import open_client
from dumont_plan.client import DumontClient
from dumont_plan.client.base import error_message
from dumont_plan.errors import ApiError, ConflictError, DumontError, NotFoundError
from dumont_plan.wire import SERVERLESS_MODES
from dumont_plan.wire_models import ServerlessPolicy

app = typer.Typer(
    help=(
        "Serverless: instances that pause when idle and wake on demand; endpoints that "
        "scale with their requests, to zero when idle.\n\n"
        "Modes: fast (processes frozen, memory kept: wakes in under a second), economic "
        "(stopped, disk kept: wakes in seconds) and spot (economic, and the machine goes back "
        "to the spot market while paused: the cheapest, wakes by bidding again)."
    ),
    no_args_is_help=True,
)

app.add_typer(endpoint_app, name="endpoint")
app.command(
    "stats",
    epilog="Examples:\n\n  dumont serverless stats\n\n  dumont serverless stats -o json",
)(endpoint_stats)

IdArg = typer.Argument(..., metavar="INSTANCE_ID", help="Instance id (see `dumont instance list`).")
T = TypeVar("T")


def complete_mode(incomplete: str) -> list[str]:
    """Shell completion of --mode."""
    return [mode for mode in SERVERLESS_MODES if mode.startswith(incomplete)]


def says(exc: ApiError) -> str:
    """What the server said, without the method and path."""
    return error_message(exc.body, exc.message)


def not_configured(instance_id: int, exc: NotFoundError) -> DumontError:
    return DumontError(
        f"instance {instance_id} has no serverless policy ({says(exc)})",
        f"enable one with `dumont serverless enable {instance_id} mode=economic`, "
        "or list them with `dumont serverless list`",
    )


def _secret_from(option: str | None, needed: bool) -> str | None:
    """The webhook secret: `--webhook-secret=VALUE`, `-` (prompt, or stdin's first line),
    else DUMONT_WEBHOOK_SECRET when a webhook is set. Never printed."""
    if option == "-":
        if sys.stdin.isatty():
            value = typer.prompt("Webhook secret", hide_input=True, default="", show_default=False)
        else:
            value = sys.stdin.readline()
        value = value.strip()
        if not value:
            raise DumontError(
                "serverless enable: the webhook secret is empty",
                'type it at the prompt, or pipe it: printf %s "$SECRET" | dumont ...',
            )
        return check_secret(str(value))
    if option:
        return check_secret(option)
    if needed and os.environ.get(SECRET_ENV):
        return check_secret(os.environ[SECRET_ENV])
    return None


@app.command(
    epilog=(
        "Enabling again replaces the whole policy (unset values take the defaults: mode spot, "
        "idle timeout 10 s, GPU threshold 5%).\n\n"
        "Examples:\n\n"
        "  dumont serverless enable 12 mode=economic\n\n"
        "  dumont serverless enable 12 --mode=fast --idle-timeout=30 --gpu-threshold=5\n\n"
        "  dumont serverless enable 12 mode=spot idle_timeout=60 keep_warm=true\n\n"
        "  dumont serverless enable 12 cpu_standby=true\n\n"
        "  dumont serverless enable 12 --webhook=https://example.org/hook --webhook-secret=-"
    )
)
def enable(
    ctx: typer.Context,
    instance_id: str = IdArg,
    words: list[str] | None = typer.Argument(
        None,
        metavar="[KEY=VALUE]...",
        help="Old-style words: mode=, idle_timeout=, gpu_threshold=, keep_warm=, webhook=, "
        "max_price=, cpu_standby=.",
        show_default=False,
    ),
    mode: str | None = typer.Option(
        None,
        "--mode",
        "-m",
        metavar="MODE",
        help="fast, economic or spot (the server's default: spot).",
        autocompletion=complete_mode,
    ),
    idle_timeout: str | None = typer.Option(
        None,
        "--idle-timeout",
        metavar="SECONDS",
        help="Seconds below the threshold before pausing (2-3600).",
    ),
    gpu_threshold: str | None = typer.Option(
        None,
        "--gpu-threshold",
        metavar="PERCENT",
        help="GPU utilisation (%) under which the instance is idle.",
    ),
    cpu_standby: bool = typer.Option(
        False, "--cpu-standby", help="Same as --mode=fast (paused on a CPU standby, memory kept)."
    ),
    keep_warm: bool | None = typer.Option(
        None, "--keep-warm/--no-keep-warm", help="Never pause automatically (wake still works)."
    ),
    webhook: str | None = typer.Option(
        None,
        "--webhook",
        metavar="URL",
        help="URL that receives a signed POST on paused, woken, wake_failed.",
    ),
    max_price: str | None = typer.Option(
        None,
        "--max-price",
        metavar="USD",
        help="spot: the most $/h a wake bids (default: the on-demand price at enable).",
    ),
    webhook_secret: str | None = typer.Option(
        None,
        "--webhook-secret",
        metavar="SECRET",
        help=f"Signing secret of the webhook; `-` asks for it unseen (else ${SECRET_ENV}).",
        show_default=False,
    ),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Enable (or change) the serverless policy of an instance."""
    number = parse_instance_id(instance_id, "serverless enable")
    flags: dict[str, str | bool | None] = {
        "mode": mode,
        "idle_timeout_seconds": idle_timeout,
        "gpu_threshold": gpu_threshold,
        "keep_warm": keep_warm,
        "webhook_url": webhook,
        "max_price": max_price,
        "cpu_standby": cpu_standby or None,
    }
    body = enable_body(words or [], flags)
    if webhook_secret is not None and "webhook_url" not in body:
        raise DumontError(
            "serverless enable: a webhook secret without a webhook", "add --webhook=URL"
        )
    secret = _secret_from(webhook_secret, needed="webhook_url" in body)
    client = open_client(ctx)
    try:
        answer = client.serverless.enable(number, **body, webhook_secret=secret)
    except NotFoundError as exc:
        raise DumontError(
            f"serverless enable: instance {number} not found ({says(exc)})",
            "use an id from `dumont instance list`",
        ) from exc
    if output is OutputFormat.json:
        emit_json(answer)
        return
    # What the server applied (its defaults filled in) over what was asked.
    keys = ("mode", "idle_timeout_seconds", "gpu_threshold", "keep_warm")
    shown: dict[str, Any] = {**body, **{k: answer[k] for k in keys if k in answer}}
    behavior = answer.get("behavior")
    recovery = behavior.get("recovery_time") if isinstance(behavior, dict) else None
    line = f"Serverless enabled on instance {number}: {describe_policy(shown)}"
    line += f"; wakes in {recovery}." if recovery else "."
    console.print(line, markup=False)
    if "webhook_url" in body:
        signed = "signed" if secret else "unsigned: no secret given"
        console.print(f"Webhook: {body['webhook_url']} ({signed}).", markup=False)


@app.command(
    epilog="A paused instance is resumed first.\n\nExamples:\n\n  dumont serverless disable 12"
)
def disable(
    ctx: typer.Context, instance_id: str = IdArg, output: OutputOpt = OutputFormat.table
) -> None:
    """Disable the serverless policy of an instance (it then runs until you pause it)."""
    number = parse_instance_id(instance_id, "serverless disable")
    try:
        answer = open_client(ctx).serverless.disable(number)
    except NotFoundError as exc:
        raise not_configured(number, exc) from exc
    if output is OutputFormat.json:
        emit_json(answer)
        return
    message = (answer or {}).get("message")
    console.print(str(message or f"Serverless disabled on instance {number}."), markup=False)


def _status(client: DumontClient, number: int) -> ServerlessPolicy:
    try:
        return client.serverless.status(number)
    except NotFoundError as exc:
        raise not_configured(number, exc) from exc


@app.command(
    epilog="Examples:\n\n  dumont serverless status 12\n\n  dumont serverless status 12 -o json"
)
def status(
    ctx: typer.Context, instance_id: str = IdArg, output: OutputOpt = OutputFormat.table
) -> None:
    """Show an instance's policy: mode, state, idle since, when it will pause, savings."""
    number = parse_instance_id(instance_id, "serverless status")
    policy = _status(open_client(ctx), number)
    if output is OutputFormat.json:
        emit_json(policy.raw)
        return
    shown, keys = status_fields(policy)
    print_fields(shown, keys)


@app.command(
    "list", epilog="Examples:\n\n  dumont serverless list\n\n  dumont serverless list -o json"
)
def list_policies(ctx: typer.Context, output: OutputOpt = OutputFormat.table) -> None:
    """List your instances that have a serverless policy."""
    policies = open_client(ctx).serverless.list()
    if output is OutputFormat.json:
        emit_json({"count": len(policies), "instances": [p.raw for p in policies]})
        return
    print_table((policy_row(p) for p in policies), LIST_COLUMNS)


def _with_clock(line: StatusLine, text: str, call: Callable[[], T]) -> T:
    """Run `call` while the status line shows `text` and the seconds waited so far."""
    done = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while not done.wait(0.5):
            line.update(f"{text} {time.monotonic() - started:.0f}s", key=text)

    line.update(f"{text} 0s", key=text)
    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        return call()
    finally:
        done.set()
        ticker.join()


@app.command(
    epilog=(
        "Prints the cold start the server measured (fast: under a second; economic and spot: "
        "seconds). A spot instance bids again at the current price and fails with the reason "
        "when no machine is under its max price.\n\n"
        "Examples:\n\n  dumont serverless wake 12"
    )
)
def wake(
    ctx: typer.Context, instance_id: str = IdArg, output: OutputOpt = OutputFormat.table
) -> None:
    """Wake a paused instance now and report its measured cold start."""
    number = parse_instance_id(instance_id, "serverless wake")
    client = open_client(ctx)
    policy = _status(client, number)
    text = f"Waking instance {number} ({policy.mode or 'serverless'})..."
    try:
        # Progress on stderr under --output json, so stdout stays one JSON document.
        with StatusLine(err_console if output is OutputFormat.json else console) as line:
            answer = _with_clock(line, text, lambda: client.serverless.wake(number))
    except ConflictError as exc:
        raise DumontError(
            f"serverless wake: instance {number} did not wake: {says(exc)}",
            f"raise its bid (`dumont serverless enable {number} mode=spot --max-price=...`) "
            "or try again later",
        ) from exc
    if output is OutputFormat.json:
        emit_json(answer.raw)
        return
    if answer.status == "already_running":
        console.print(f"Instance {number} is already running.", markup=False)
        return
    cold = answer.cold_start_seconds
    measured = f"cold start {cold:.2f}s" if isinstance(cold, int | float) else "cold start -"
    how = f", {answer.method}" if answer.method else ""
    console.print(
        f"Instance {number} is running ({answer.mode or policy.mode}{how}): {measured}.",
        markup=False,
    )


@app.command(
    epilog="Examples:\n\n  dumont serverless pricing\n\n  dumont serverless pricing -o json"
)
def pricing(ctx: typer.Context, output: OutputOpt = OutputFormat.table) -> None:
    """What each mode costs a month against always on, and what it saves."""
    answer = open_client(ctx).serverless.pricing()
    if output is OutputFormat.json:
        emit_json(answer)
        return
    print_pricing(answer)


@app.command(
    epilog="Examples:\n\n  dumont serverless webhooks 12\n\n  dumont serverless webhooks 12 -o json"
)
def webhooks(
    ctx: typer.Context, instance_id: str = IdArg, output: OutputOpt = OutputFormat.table
) -> None:
    """The webhook deliveries of an instance (paused, woken, wake_failed), oldest first."""
    number = parse_instance_id(instance_id, "serverless webhooks")
    try:
        deliveries = open_client(ctx).serverless.webhooks(number)
    except NotFoundError as exc:
        raise not_configured(number, exc) from exc
    if output is OutputFormat.json:
        emit_json({"instance_id": number, "deliveries": deliveries})
        return
    print_table((webhook_row(d) for d in deliveries), WEBHOOK_COLUMNS)
