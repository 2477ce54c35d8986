"""`dumont model install <instance_id> <model>`: pull an Ollama model into a running instance.

The real CLI does this over SSH (contract §10.1). Instances of the local control plane run on
this machine, so here it is the local `ollama` binary that pulls the model, talking to the
instance's Ollama port when the instance publishes one (`OLLAMA_HOST`), else to the default
daemon. Without an `ollama` binary it says so in one line and exits 1.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import typer

from dumont_plan.cli import durations
from dumont_plan.cli.instance import fetch, parse_id
from dumont_plan.cli.output import OutputFormat, OutputOpt, emit_json, err_console, print_fields
from dumont_plan.cli.session import open_client
from dumont_plan.errors import DumontError
from dumont_plan.wire_models import Instance

app = typer.Typer(help="Ollama models on your instances.", no_args_is_help=True)

OLLAMA_PORT = "11434"
PULL_TIMEOUT_SECONDS = 1800


def ollama_host(instance: Instance) -> str | None:
    """`host:port` of the instance's published Ollama port, when it has one."""
    mapped_host, port = instance.host_port(f"{OLLAMA_PORT}/tcp")
    host = mapped_host or instance.public_ipaddr or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"{host}:{port}" if port else None


def pull(binary: str, model: str, host: str | None, timeout: float) -> None:
    """Run `ollama pull MODEL` (its progress goes to stderr); DumontError when it fails."""
    env = dict(os.environ)
    if host:
        env["OLLAMA_HOST"] = host
    try:
        proc = subprocess.run(
            [binary, "pull", model],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise DumontError(
            f"`ollama pull {model}` did not finish in {timeout:g} s",
            "retry with a larger --timeout, or check the network",
        ) from exc
    lines = [line.strip() for line in (proc.stdout or "").splitlines() if line.strip()]
    for line in lines[-20:]:
        err_console.print(line, markup=False, highlight=False)
    if proc.returncode != 0:
        last = lines[-1] if lines else f"exit code {proc.returncode}"
        raise DumontError(
            f"`ollama pull {model}` failed: {last}",
            "check the model name (https://ollama.com/library) and that `ollama serve` is running",
        )


@app.command(
    epilog=(
        "Needs the instance running and the `ollama` binary on this machine "
        "(https://ollama.com/download).\n\n"
        "Examples:\n\n  dumont model install 12 llama3\n\n"
        "  dumont model install 12 qwen2.5:0.5b --output json"
    )
)
def install(
    ctx: typer.Context,
    instance_id: str = typer.Argument(..., metavar="INSTANCE_ID", help="A running instance."),
    model: str = typer.Argument(..., metavar="MODEL", help="Ollama model, e.g. llama3."),
    timeout: float = typer.Option(
        PULL_TIMEOUT_SECONDS,
        "--timeout",
        help="How long the download may take (30s, 15m, 2h; a bare number is seconds).",
        metavar="DURATION",
        parser=durations.seconds,
    ),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Install an Ollama model in an instance."""
    number = parse_id(instance_id)
    if not model.strip() or model.startswith("-"):
        raise DumontError(f"model install: model name {model!r} is not valid", "e.g. llama3")
    instance = fetch(open_client(ctx), number)
    if not instance.is_running:
        state = instance.display_status
        fix = (
            f"resume it first: `dumont instance resume {number}`"
            if state == "paused"
            else f"wait until it is running (`dumont instance get {number}`)"
        )
        raise DumontError(f"instance {number} is {state}, not running", fix)
    binary = shutil.which("ollama")
    if binary is None:
        raise DumontError(
            f"cannot install {model} on instance {number}: no `ollama` binary on this machine "
            "(the local control plane runs instances here)",
            "install Ollama (https://ollama.com/download) and retry",
        )
    host = ollama_host(instance)
    pull(binary, model, host, timeout)
    report = {
        "instance_id": number,
        "model": model,
        "ollama_url": f"http://{host or '127.0.0.1:' + OLLAMA_PORT}",
        "gpu": instance.gpu_name,
        "status": "ready",
    }
    if output is OutputFormat.json:
        emit_json(report)
        return
    print_fields(report)
