"""`dumont serverless endpoint ...` and `dumont serverless stats`: request-driven endpoints that
scale with their requests and to zero when idle (contract §7.3; the local control plane runs
the endpoint's `--command`, serving HTTP on `$PORT`).

An endpoint is named by its id (`ep-…`) or by its name when that is unique among yours.
Numbers are read here (not by click), so a bad one is one line naming the option, exit 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from dumont_plan.cli.output import (
    OutputFormat,
    OutputOpt,
    console,
    emit_json,
    err_console,
    print_fields,
    print_table,
)
from dumont_plan.cli.session import open_client
from dumont_plan.client import DumontClient
from dumont_plan.errors import DumontError, NotFoundError
from dumont_plan.spec.serverless_endpoint import DEFAULT_IMAGE

app = typer.Typer(
    help=(
        "Serverless endpoints: an HTTP workload that starts on the first request, scales out "
        "with concurrent requests up to --max and back to --min (0: to zero) when idle."
    ),
    no_args_is_help=True,
)

COLUMNS = ("id", "name", "status", "instances", "requests_24h", "p99_ms", "cost_24h")
EndpointArg = typer.Argument(..., metavar="ENDPOINT", help="Endpoint id (ep-…) or its name.")


def _number(value: str | None, option: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit() or not low <= int(text) <= high:
        raise DumontError(
            f"serverless endpoint: {option} {value!r} is not a whole number from {low} to {high}",
            f"give {option}=N with {low} <= N <= {high}",
        )
    return int(text)


def _env(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise DumontError(
                f"serverless endpoint: --env {pair!r} is not KEY=VALUE", "write --env NAME=value"
            )
        found[key.strip()] = value
    return found


def resolve(client: DumontClient, ref: str) -> str:
    """The id of the endpoint `ref` names (an id, or a name unique among the caller's)."""
    if ref.startswith("ep-"):
        return ref
    matches = [e for e in client.endpoints.list() if e.get("name") == ref]
    if len(matches) == 1:
        return str(matches[0]["id"])
    if not matches:
        raise DumontError(
            f"serverless endpoint: no endpoint named {ref!r}",
            "list yours with `dumont serverless endpoint list`",
        )
    raise DumontError(
        f"serverless endpoint: {len(matches)} endpoints are named {ref!r}",
        "name it by its id (`dumont serverless endpoint list`)",
    )


def _call(what: str, ref: str, call: Any) -> Any:
    try:
        return call()
    except NotFoundError as exc:
        raise DumontError(
            f"serverless endpoint {what}: endpoint {ref} not found",
            "list yours with `dumont serverless endpoint list`",
        ) from exc


def row_of(endpoint: dict[str, Any]) -> dict[str, Any]:
    scaling = endpoint.get("auto_scaling") or {}
    metrics = endpoint.get("metrics") or {}
    pricing = endpoint.get("pricing") or {}
    cost = pricing.get("cost_24h")
    return {
        "id": endpoint.get("id"),
        "name": endpoint.get("name"),
        "status": endpoint.get("status"),
        "instances": f"{scaling.get('current_instances', 0)} "
        f"({scaling.get('min_instances')}-{scaling.get('max_instances')})",
        "requests_24h": metrics.get("total_requests_24h"),
        "p99_ms": metrics.get("p99_latency_ms"),
        "cost_24h": f"${cost:.4f}" if isinstance(cost, int | float) else None,
    }


def _show(endpoint: dict[str, Any], output: OutputFormat) -> None:
    if output is OutputFormat.json:
        emit_json(endpoint)
        return
    metrics = endpoint.get("metrics") or {}
    shown = {
        **row_of(endpoint),
        "url": endpoint.get("url"),
        "command": endpoint.get("command"),
        "image": endpoint.get("docker_image"),
        "gpu": endpoint.get("gpu_name"),
        "concurrency": endpoint.get("concurrency"),
        "idle_timeout": endpoint.get("idle_timeout_seconds"),
        "requests_per_sec": metrics.get("requests_per_sec"),
        "avg_latency_ms": metrics.get("avg_latency_ms"),
        "cold_starts_24h": metrics.get("cold_starts_24h"),
    }
    print_fields(shown)


@app.command(
    epilog=(
        "Examples:\n\n"
        "  dumont serverless endpoint create echo --command='python3 -m http.server $PORT'\n\n"
        "  dumont serverless endpoint create api --command='./serve' --gpu='RTX 4090' "
        "--min=0 --max=3 --concurrency=4 --idle-timeout=60"
    )
)
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Endpoint name."),
    command: str = typer.Option(
        ..., "--command", help="Shell command serving HTTP on $PORT (run in a sandbox)."
    ),
    image: str = typer.Option(DEFAULT_IMAGE, "--image", help="Image a real cloud would run."),
    gpu: str = typer.Option("RTX 4090", "--gpu", help="GPU model (prices the endpoint)."),
    machine_type: str = typer.Option("spot", "--machine-type", help="spot or on-demand."),
    min_instances: str = typer.Option("0", "--min", metavar="N", help="Workers kept (0-10)."),
    max_instances: str = typer.Option("3", "--max", metavar="N", help="Workers at most (1-50)."),
    concurrency: str | None = typer.Option(
        None, "--concurrency", metavar="N", help="Requests in flight per worker (default 1)."
    ),
    idle_timeout: str | None = typer.Option(
        None, "--idle-timeout", metavar="SECONDS", help="Idle time before a worker stops (60)."
    ),
    env: list[str] | None = typer.Option(None, "--env", metavar="KEY=VALUE", help="Repeatable."),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Create an endpoint; it starts its first worker on the first request (--min=0)."""
    fields = {
        "name": name,
        "command": command,
        "docker_image": image,
        "gpu_name": gpu,
        "machine_type": machine_type,
        "min_instances": _number(min_instances, "--min", 0, 10),
        "max_instances": _number(max_instances, "--max", 1, 50),
        "concurrency": _number(concurrency, "--concurrency", 1, 1000),
        "idle_timeout_seconds": _number(idle_timeout, "--idle-timeout", 1, 3600),
        "env_vars": _env(env),
    }
    if fields["min_instances"] > fields["max_instances"]:  # type: ignore[operator]
        raise DumontError(
            f"serverless endpoint create: --min={min_instances} is above --max={max_instances}",
            "lower --min or raise --max",
        )
    endpoint = open_client(ctx).endpoints.create(**fields)
    if output is OutputFormat.json:
        emit_json(endpoint)
        return
    console.print(
        f"Endpoint {endpoint.get('id')} ({name}) created: invoke it with "
        f"`dumont serverless endpoint invoke {endpoint.get('id')} [PATH]`.",
        markup=False,
    )


@app.command(
    "list",
    epilog=(
        "Examples:\n\n  dumont serverless endpoint list\n\n"
        "  dumont serverless endpoint list -o json"
    ),
)
def list_endpoints(ctx: typer.Context, output: OutputOpt = OutputFormat.table) -> None:
    """List your endpoints: status, workers (min-max), requests and cost of the last 24 h."""
    found = open_client(ctx).endpoints.list()
    if output is OutputFormat.json:
        emit_json({"endpoints": found})
        return
    print_table((row_of(e) for e in found), COLUMNS)


@app.command(epilog="Examples:\n\n  dumont serverless endpoint get echo -o json")
def get(
    ctx: typer.Context, endpoint: str = EndpointArg, output: OutputOpt = OutputFormat.table
) -> None:
    """Show an endpoint: status, workers, metrics and cost of the last 24 h."""
    client = open_client(ctx)
    endpoint_id = resolve(client, endpoint)
    _show(_call("get", endpoint, lambda: client.endpoints.get(endpoint_id)), output)


@app.command("status", epilog="Examples:\n\n  dumont serverless endpoint status echo")
def status(
    ctx: typer.Context, endpoint: str = EndpointArg, output: OutputOpt = OutputFormat.table
) -> None:
    """Same as `get`."""
    get(ctx, endpoint, output)


@app.command(
    epilog=(
        "A new --command replaces the running workers.\n\n"
        "Examples:\n\n  dumont serverless endpoint update echo --min=1 --max=5"
    )
)
def update(
    ctx: typer.Context,
    endpoint: str = EndpointArg,
    min_instances: str | None = typer.Option(None, "--min", metavar="N", help="0-10."),
    max_instances: str | None = typer.Option(None, "--max", metavar="N", help="1-50."),
    concurrency: str | None = typer.Option(None, "--concurrency", metavar="N", help="1-1000."),
    idle_timeout: str | None = typer.Option(
        None, "--idle-timeout", metavar="SECONDS", help="1-3600."
    ),
    command: str | None = typer.Option(None, "--command", help="A new command."),
    machine_type: str | None = typer.Option(None, "--machine-type", help="spot or on-demand."),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Change how an endpoint scales, its price class or its command."""
    changes = {
        "min_instances": _number(min_instances, "--min", 0, 10),
        "max_instances": _number(max_instances, "--max", 1, 50),
        "concurrency": _number(concurrency, "--concurrency", 1, 1000),
        "idle_timeout_seconds": _number(idle_timeout, "--idle-timeout", 1, 3600),
        "command": command,
        "machine_type": machine_type,
    }
    if all(v is None for v in changes.values()):
        raise DumontError(
            "serverless endpoint update: nothing to change",
            "give --min, --max, --concurrency, --idle-timeout, --command or --machine-type",
        )
    client = open_client(ctx)
    endpoint_id = resolve(client, endpoint)
    answer = _call("update", endpoint, lambda: client.endpoints.update(endpoint_id, **changes))
    _show(answer, output)


def _action(ctx: typer.Context, what: str, endpoint: str, output: OutputFormat) -> None:
    client = open_client(ctx)
    endpoint_id = resolve(client, endpoint)
    call = getattr(client.endpoints, what)
    answer = _call(what, endpoint, lambda: call(endpoint_id))
    if output is OutputFormat.json:
        emit_json(answer)
        return
    console.print(
        str(answer.get("message") or f"Endpoint {endpoint_id}: {what} done."), markup=False
    )


@app.command(
    epilog="Every worker is stopped first.\n\nExamples:\n\n  dumont serverless endpoint delete echo"
)
def delete(
    ctx: typer.Context, endpoint: str = EndpointArg, output: OutputOpt = OutputFormat.table
) -> None:
    """Delete an endpoint (its workers stop)."""
    _action(ctx, "delete", endpoint, output)


@app.command(epilog="Examples:\n\n  dumont serverless endpoint pause echo")
def pause(
    ctx: typer.Context, endpoint: str = EndpointArg, output: OutputOpt = OutputFormat.table
) -> None:
    """Stop every worker; requests are refused until `resume`."""
    _action(ctx, "pause", endpoint, output)


@app.command(epilog="Examples:\n\n  dumont serverless endpoint resume echo")
def resume(
    ctx: typer.Context, endpoint: str = EndpointArg, output: OutputOpt = OutputFormat.table
) -> None:
    """Accept requests again (`--min` workers start)."""
    _action(ctx, "resume", endpoint, output)


def _data(value: str | None) -> Any:
    if value is None:
        return None
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise DumontError(
                f"serverless endpoint invoke: cannot read {value[1:]} ({exc.strerror})",
                "give --data=@FILE with a readable JSON file",
            ) from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DumontError(
            f"serverless endpoint invoke: --data is not JSON ({exc})",
            'give --data=\'{"key": "value"}\' or --data=@FILE',
        ) from exc


@app.command(
    epilog=(
        "GET without --data, POST with it. The answer's body goes to stdout; whether a worker "
        "had to start (cold start) to stderr.\n\n"
        "Examples:\n\n  dumont serverless endpoint invoke echo /health\n\n"
        "  dumont serverless endpoint invoke echo predict --data='{\"x\": 1}'"
    )
)
def invoke(
    ctx: typer.Context,
    endpoint: str = EndpointArg,
    path: str = typer.Argument("", metavar="[PATH]", help="Path on the workload (default /)."),
    data: str | None = typer.Option(None, "--data", "-d", help="JSON body, or @FILE."),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Send one request to an endpoint (a worker starts if none runs)."""
    body = _data(data)
    client = open_client(ctx)
    endpoint_id = resolve(client, endpoint)
    answer = _call(
        "invoke", endpoint, lambda: client.endpoints.invoke(endpoint_id, path, json=body)
    )
    cold = answer.headers.get("x-dumont-cold-start") == "1"
    if output is OutputFormat.json:
        try:
            parsed: Any = answer.json()
        except ValueError:
            parsed = answer.text
        emit_json({"status": answer.status_code, "cold_start": cold, "body": parsed})
        return
    sys.stdout.write(answer.text if answer.text.endswith("\n") else answer.text + "\n")
    if cold:
        err_console.print("(cold start: a worker started for this request)", markup=False)


def stats(ctx: typer.Context, output: OutputOpt = OutputFormat.table) -> None:
    """Your endpoints summed: requests, latency, cost and cold starts of the last 24 h."""
    answer = open_client(ctx).endpoints.stats()
    if output is OutputFormat.json:
        emit_json(answer)
        return
    print_fields(answer)
