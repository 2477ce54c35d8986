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
from dumont_plan.server.settings import ServerSettings


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
    parser.add_argument("--fault-rate", type=float, default=None)
    parser.add_argument("--log-level", default="warning")
    add_limit_arguments(parser)
    args = parser.parse_args(argv)

    settings = ServerSettings.from_env(
        args.data_dir.resolve(),
        host=args.host,
        enable_test_hooks=True if args.test_hooks else None,
        fault_rate=args.fault_rate,
        log_cap_bytes=args.log_cap_bytes,
    )
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on accepted sockets whose proto says
    # TCP (a proto of 0 is inherited by them); without it every response on a kept-alive
    # connection waits ~40 ms (Nagle's algorithm against the client's delayed ACK).
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.set_inheritable(True)
    settings.port = int(sock.getsockname()[1])
    app = create_app(settings)
    if args.port_file:
        bound = {"host": args.host, "port": settings.port, "pid": os.getpid()}
        write_atomic(args.port_file, json.dumps(bound), durable=False)
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{settings.port}"
    if args.record:
        write_record(args.record, {"pid": os.getpid(), "port": settings.port, "url": url})
    print(f"Dumont local control plane at {url} (data dir {settings.data_dir})", file=sys.stderr)
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
