"""`dumont server start|stop|status`: the embedded local control plane."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from typing import Any

import typer

from dumont_plan.cli.embedded import running_server, server_args, start_server, stop_server
from dumont_plan.cli.output import OutputFormat, OutputOpt, console, emit_json
from dumont_plan.client import health
from dumont_plan.config import data_dir
from dumont_plan.errors import DumontError
from dumont_plan.wire import is_loopback


class Executor(StrEnum):
    local = "local"
    skypilot = "skypilot"


NOT_RUNNING = 3  # `server status`'s exit code when nothing runs (as `pg_ctl status`)

app = typer.Typer(
    help="Manage the local control plane (started automatically when no API URL is set).",
    no_args_is_help=True,
)


@app.command()
def start(
    port: int = typer.Option(0, help="Port on 127.0.0.1; 0 picks a free one."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    foreground: bool = typer.Option(False, help="Run in this terminal until Ctrl-C."),
    multi_user: bool = typer.Option(
        False,
        "--multi-user",
        help="Let others register (needs workload isolation: bubblewrap); default single-user.",
    ),
    max_running_jobs: int | None = typer.Option(
        None,
        min=1,
        help="Jobs of one user running at once; more wait in pending and start in order "
        "(default 8).",
    ),
    max_instances: int | None = typer.Option(
        None, min=1, help="Instances one user may have; more are refused (default 16)."
    ),
    log_cap_bytes: int | None = typer.Option(
        None,
        min=4096,
        help="A job's log keeps its head and its last part past this many bytes (default 32 MiB).",
    ),
    executor: Executor | None = typer.Option(
        None,
        help="What runs jobs: local sandboxes (default) or SkyPilot managed jobs on your clouds "
        "(needs `pip install 'dumont-plan[skypilot]'` and `sky check`).",
    ),
    test_hooks: bool = typer.Option(False, hidden=True),
) -> None:
    """Start the local control plane in the background (or the foreground)."""
    limits: list[str] = [] if executor is None else ["--executor", executor.value]
    for flag, value in (
        ("--max-running-jobs", max_running_jobs),
        ("--max-instances", max_instances),
        ("--log-cap-bytes", log_cap_bytes),
    ):
        if value is not None:
            limits += [flag, str(value)]
    if not is_loopback(host):
        if not multi_user:
            raise DumontError(
                f"--host {host} is not a loopback address: other machines could reach it",
                "add --multi-user (anyone who reaches the port can then register)",
            )
        console.print(
            f"[yellow]warning:[/] listening on {host}: anyone who reaches this port can register."
        )
    if foreground:
        current = running_server()
        if current is not None:
            raise DumontError(
                f"a local control plane already runs at {current.url} (pid {current.pid})",
                "stop it first (`dumont server stop`)",
            )
        args = server_args(data_dir(), host, port, multi_user, limits)
        args += ["--record", str(data_dir() / "server.json")]
        if test_hooks:
            args.append("--test-hooks")
        os.execv(sys.executable, args)
    current = running_server()
    if current is not None:
        wanted = [f"--port {port}"] if port and port != current.port else []
        if host != "127.0.0.1" or multi_user or limits:
            wanted.append("the options given")
        if wanted:
            raise DumontError(
                f"a local control plane already runs at {current.url} (pid {current.pid}); "
                f"it cannot take {' and '.join(wanted)} while running",
                "stop it first (`dumont server stop`), then start it again with them",
            )
        console.print(f"Already running at {current.url} (pid {current.pid}).")
        return
    info = start_server(port=port, host=host, multi_user=multi_user, limits=limits)
    console.print(f"Local control plane running at {info.url} (pid {info.pid}).")


@app.command()
def stop() -> None:
    """Stop the background local control plane."""
    info = stop_server()
    if info is None:
        console.print("No local control plane was running.")
    else:
        console.print(f"Stopped the local control plane (pid {info.pid}).")


def _capability(capabilities: list[str], prefix: str) -> str | None:
    return next((c[len(prefix) :] for c in capabilities if c.startswith(prefix)), None)


@app.command()
def status(output: OutputOpt = OutputFormat.table) -> None:
    """Show whether the local control plane runs, where, and how it isolates jobs.

    Exit code 0 when it runs, 3 when it does not (as `pg_ctl status`)."""
    info = running_server()
    body = health(info.url) if info else None
    capabilities = [str(c) for c in (body or {}).get("capabilities") or []]
    data: dict[str, Any] = {
        "running": info is not None,
        "url": info.url if info else None,
        "pid": info.pid if info else None,
        "data_dir": str(data_dir()),
        "isolation": _capability(capabilities, "isolation."),
        "process_limit": _capability(capabilities, "process-limit."),
        "users": _capability(capabilities, "users."),
        "executor": (body or {}).get("executor"),
    }
    if output is OutputFormat.json:
        emit_json(data)
    elif info is None:
        console.print(f"Not running (data dir {data['data_dir']}).")
    else:
        console.print(f"Running at {info.url} (pid {info.pid}, data dir {data['data_dir']}).")
        limit = f" (process limit: {data['process_limit']})" if data["process_limit"] else ""
        console.print(f"isolation: {data['isolation']}{limit}; users: {data['users']}")
        executor = data["executor"] or {}
        if executor.get("name"):
            why = "" if executor.get("available") else f" (not usable: {executor.get('reason')})"
            console.print(f"executor: {executor['name']}{why}")
        if data["isolation"] == "none":
            console.print(
                "[yellow]warning:[/] jobs run unisolated (no bubblewrap); see the server log."
            )
    if info is None:
        raise typer.Exit(NOT_RUNNING)
