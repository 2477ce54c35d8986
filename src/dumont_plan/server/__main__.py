"""`python -m dumont_plan.server`: run the local control plane in the foreground."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import uvicorn

from dumont_plan.files import write_atomic
from dumont_plan.server.app import create_app
from dumont_plan.server.provider import instance_processes
from dumont_plan.server.provider.executors import EXECUTORS, check_setting, executor_info
from dumont_plan.server.provider.isolation import isolation_of, probe, process_limit_enforced
from dumont_plan.server.routes.auth import add_user
from dumont_plan.server.settings import PROFILES, PROVIDER_STATES, ServerSettings
from dumont_plan.wire import LOOPBACK_NAMES, is_loopback


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dumont_plan.server")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", type=Path, help="write {host, port, pid} here once bound")
    parser.add_argument(
        "--record", type=Path, help="keep {pid, port, url} here (0600) while serving"
    )
    parser.add_argument("--test-hooks", action="store_true", help="enable /api/v1/_local routes")
    parser.add_argument(
        "--multi-user",
        action="store_true",
        help="let anyone who reaches the port register (needs workload isolation)",
    )
    parser.add_argument(
        "--local-user-file",
        type=Path,
        help='create the account {"email", "password"} of this file on start (single-user)',
    )
    parser.add_argument(
        "--isolation",
        choices=["auto", "none"],
        default="auto",
        help="auto: run workloads under bubblewrap when it works; none: unisolated",
    )
    parser.add_argument(
        "--executor",
        choices=list(EXECUTORS),
        default=None,
        help="what runs jobs: local sandboxes (default) or SkyPilot managed jobs",
    )
    parser.add_argument(
        "--trusted-host",
        action="append",
        default=[],
        help="another name clients use for this server (Host header); repeatable",
    )
    parser.add_argument(
        "--share-dir",
        action="append",
        type=Path,
        default=[],
        help="a host directory every workload may read; repeatable",
    )
    parser.add_argument(
        "--profile",
        choices=list(PROFILES),
        default=None,
        help="real-platform: behave as the real Dumont server does (DUMONT_SERVER_PROFILE)",
    )
    parser.add_argument(
        "--provider",
        choices=list(PROVIDER_STATES),
        default=None,
        help="the simulated GPU provider's state (DUMONT_SERVER_PROVIDER)",
    )
    parser.add_argument("--fault-rate", type=float, default=None)
    parser.add_argument("--log-level", default="warning")
    add_limit_arguments(parser)
    args = parser.parse_args(argv)
    os.umask(0o077)  # the data dir and all it holds: 0700 dirs, 0600 files

    settings = ServerSettings.from_env(
        args.data_dir.resolve(),
        host=args.host,
        enable_test_hooks=True if args.test_hooks else None,
        fault_rate=args.fault_rate,
        log_cap_bytes=args.log_cap_bytes,
        multi_user=args.multi_user,
        isolation=args.isolation,
        max_running_jobs=args.max_running_jobs,
        max_instances=args.max_instances,
        profile=args.profile,
        provider=args.provider,
        executor=args.executor,
    )
    settings.shared_dirs += [p.resolve() for p in args.share_dir]
    settings.trusted_hosts = [args.host, *LOOPBACK_NAMES, *args.trusted_host]
    problem = check_setting(settings) or check_exposure(settings)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    settings.data_dir.chmod(0o700)
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on accepted sockets whose proto says
    # TCP (a proto of 0 is inherited by them); without it every response on a kept-alive
    # connection waits ~40 ms (Nagle's algorithm against the client's delayed ACK).
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.set_inheritable(True)
    settings.port = int(sock.getsockname()[1])
    instance_processes.set_scope(settings.data_dir)
    app = create_app(settings)
    executor_info(app.state.dumont)  # starts SkyPilot's credential check in the background
    if args.local_user_file:
        creds = json.loads(args.local_user_file.read_text(encoding="utf-8"))
        add_user(app.state.dumont, str(creds["email"]), str(creds["password"]))
    if args.port_file:
        bound = {"host": args.host, "port": settings.port, "pid": os.getpid()}
        write_atomic(args.port_file, json.dumps(bound), durable=False)
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{settings.port}"
    if args.record:
        write_record(args.record, {"pid": os.getpid(), "port": settings.port, "url": url})
    users = "multi-user" if settings.multi_user else "single-user"
    isolation = isolation_of(settings)
    print(
        f"Dumont local control plane at {url} (data dir {settings.data_dir}; {users};"
        f" isolation: {isolation}; executor: {settings.executor})",
        file=sys.stderr,
    )
    if isolation == "none":
        reason = probe() or "turned off with --isolation none"
        print(f"warning: jobs and instances run unisolated: {reason}", file=sys.stderr)
    elif not process_limit_enforced(settings):
        print(
            "warning: the workloads' process limit does not hold (they run as root:"
            " install setpriv, util-linux)",
            file=sys.stderr,
        )
    if not is_loopback(args.host):
        print(
            f"warning: listening on {args.host}: anyone who reaches this port can register;"
            " clients must use one of the names given with --trusted-host",
            file=sys.stderr,
        )
    sys.stderr.flush()
    config = uvicorn.Config(app, log_level=args.log_level, access_log=False)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        if args.record:
            remove_record(args.record)
    return 0


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """The per-job and per-user limits (defaults: ServerSettings)."""
    defaults = ServerSettings(data_dir=Path())
    parser.add_argument(
        "--log-cap-bytes",
        type=positive_int(4096),
        default=None,
        help="a job's log keeps its head and its last part past this many bytes "
        f"(default {defaults.log_cap_bytes})",
    )
    parser.add_argument(
        "--max-running-jobs",
        type=positive_int(1),
        default=None,
        help="jobs of one user running at once; more wait in pending, started in order "
        f"(default {defaults.max_running_jobs})",
    )
    parser.add_argument(
        "--max-instances",
        type=positive_int(1),
        default=None,
        help=f"instances one user may have; more get a 429 (default {defaults.max_instances})",
    )


def positive_int(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below the minimum of {minimum}")
        return value

    return parse


def check_exposure(settings: ServerSettings) -> str | None:
    """Why this server must not start as configured, or None."""
    if not is_loopback(settings.host) and not settings.multi_user:
        return (
            f"--host {settings.host} is not a loopback address; a control plane reachable from"
            " other machines must be started with --multi-user"
        )
    if settings.multi_user and isolation_of(settings) == "none":
        reason = probe() or "--isolation none was given"
        return (
            "a multi-user control plane runs other users' jobs and needs workload isolation,"
            f" which is not available: {reason}"
        )
    return None


def write_record(path: Path, record: dict[str, object]) -> None:
    """Write the server record atomically with mode 0600."""
    write_atomic(path, json.dumps({**record, "started": time.time()}) + "\n", durable=False)


def remove_record(path: Path) -> None:
    """Remove the record if it is still this process's (a newer server may have replaced it)."""
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()


if __name__ == "__main__":
    raise SystemExit(main())
