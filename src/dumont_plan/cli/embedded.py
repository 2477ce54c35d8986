"""The embedded default: start (or reuse) the local control plane on 127.0.0.1.

The running server is recorded in `<data dir>/server.json` (pid, port, url). Starting is
serialised with an exclusive lock on `<data dir>/server.lock`, so two CLI processes starting at
once end up sharing one server. A local user is registered on first use and its password kept
in `<data dir>/local-user.json` (mode 0600).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dumont_plan.client import is_healthy
from dumont_plan.config import data_dir, read_json_file
from dumont_plan.errors import ConfigError, ServerStartError
from dumont_plan.files import create_atomic, write_atomic

START_TIMEOUT = 30.0
LOCAL_EMAIL = "local@dumont.localhost"


@dataclass(frozen=True)
class ServerInfo:
    pid: int
    port: int
    url: str
    data_dir: Path


def _proc_file(pid: int, name: str) -> bytes | None:
    """`/proc/<pid>/<name>` on Linux; None where there is no /proc (or the process is gone)."""
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return None


def _pid_alive(pid: int) -> bool:
    """Whether `pid` runs. A zombie (exited, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _proc_file(pid, "stat")
    return stat is None or stat.rpartition(b")")[2].split()[:1] != [b"Z"]


def _is_control_plane(pid: int) -> bool:
    """Whether `pid` is a local control plane (and not an unrelated process that reused it)."""
    cmdline = _proc_file(pid, "cmdline")
    return cmdline is None or b"dumont_plan.server" in cmdline


@contextlib.contextmanager
def _start_lock(directory: Path) -> Iterator[None]:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(os.open(directory / "server.lock", os.O_RDWR | os.O_CREAT, 0o600), "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read_record(directory: Path) -> dict[str, Any]:
    """`server.json`; a damaged record counts as none (it is rewritten on the next start)."""
    try:
        return read_json_file(directory / "server.json", "server record")
    except ConfigError:
        return {}


def running_server(directory: Path | None = None) -> ServerInfo | None:
    """The recorded server if its process is alive and answers /health."""
    directory = directory or data_dir()
    info = _read_record(directory)
    if not info:
        return None
    try:
        pid, port, url = int(info["pid"]), int(info["port"]), str(info["url"])
    except (KeyError, TypeError, ValueError):
        return None
    if not _pid_alive(pid) or not is_healthy(url):
        return None
    return ServerInfo(pid, port, url, directory)


def server_args(
    directory: Path, host: str, port: int, multi_user: bool, limits: Sequence[str] = ()
) -> list[str]:
    """The command line of a local control plane on `directory` (single-user by default:
    its one account is the local user of `local-user.json`); `limits` are more options
    (`--max-running-jobs 4`, ...)."""
    args = [sys.executable, "-m", "dumont_plan.server", "--data-dir", str(directory)]
    args += ["--host", host, "--port", str(port), *limits]
    if multi_user:
        args.append("--multi-user")
    local_credentials(directory)
    return [*args, "--local-user-file", str(directory / "local-user.json")]


def start_server(
    directory: Path | None = None,
    port: int = 0,
    host: str = "127.0.0.1",
    multi_user: bool = False,
    limits: Sequence[str] = (),
) -> ServerInfo:
    """Return the running local control plane, starting it in the background if needed."""
    directory = directory or data_dir()
    with _start_lock(directory):
        current = running_server(directory)
        if current is not None:
            return current
        port_file = directory / "server.port.json"
        port_file.unlink(missing_ok=True)
        log_path = directory / "server.log"
        with open(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
            proc = subprocess.Popen(
                [
                    *server_args(directory, host, port, multi_user, limits),
                    "--port-file",
                    str(port_file),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        url = ""
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServerStartError(
                    f"the local control plane exited with code {proc.returncode} on start",
                    f"see {log_path}",
                )
            if not url and port_file.exists():
                with contextlib.suppress(ValueError, OSError):
                    bound = json.loads(port_file.read_text(encoding="utf-8"))
                    url = f"http://{host}:{int(bound['port'])}"
            if url and is_healthy(url, timeout=1.0):
                info = ServerInfo(proc.pid, int(url.rsplit(":", 1)[1]), url, directory)
                record = {"pid": info.pid, "port": info.port, "url": url, "started": time.time()}
                write_atomic(directory / "server.json", json.dumps(record) + "\n")
                return info
            time.sleep(0.1)
        proc.kill()
        raise ServerStartError(
            f"the local control plane did not answer /health within {START_TIMEOUT:.0f}s",
            f"see {log_path}",
        )


def stop_server(directory: Path | None = None, timeout: float = 10.0) -> ServerInfo | None:
    """Stop the recorded local control plane; return what was stopped (None if nothing)."""
    directory = directory or data_dir()
    with _start_lock(directory):
        info = _read_record(directory)
        (directory / "server.json").unlink(missing_ok=True)
        if not info:
            return None
        try:
            pid = int(info.get("pid", 0))
        except (TypeError, ValueError):
            return None
        if pid <= 0 or not _pid_alive(pid) or not _is_control_plane(pid):
            return None
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.05)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        return ServerInfo(pid, int(info.get("port", 0)), str(info.get("url", "")), directory)


def local_credentials(directory: Path | None = None) -> dict[str, Any]:
    """The local user's e-mail and password, created (0600) on first use.

    The file is written aside and hard-linked into place, so two CLI processes that start at
    once agree on one password.
    """
    directory = directory or data_dir()
    path = directory / "local-user.json"
    fix = f"delete it and the database in {directory} to start afresh"
    creds = read_json_file(path, "local user file", fix)
    if creds.get("email") and creds.get("password"):
        return creds
    fresh = {"email": LOCAL_EMAIL, "password": secrets.token_urlsafe(24)}
    text = json.dumps(fresh) + "\n"
    if create_atomic(path, text):
        return fresh
    existing = read_json_file(path, "local user file", fix)
    if existing.get("email") and existing.get("password"):
        return existing  # another process was first
    write_atomic(path, text)  # a damaged file: replace it
    return fresh
