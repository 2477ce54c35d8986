"""Test support: a real local control plane on a free loopback port, users, the CLI.

Every test that needs the API gets its own fresh user on the shared session server, so no test
depends on another's leftovers (per-user isolation is itself a tested property).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from dumont_plan.client import DumontClient, RetryPolicy
from dumont_plan.errors import ApiError

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "correct-horse-battery"


@dataclass
class LocalServer:
    """A `python -m dumont_plan.server` subprocess; stop() kills its whole process group."""

    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    # Tests register users of their own: the test server is multi-user unless told otherwise.
    multi_user: bool = True

    def start(self, timeout: float = 30.0) -> LocalServer:
        port_file = self.data_dir / "test-server.port.json"
        port_file.unlink(missing_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dumont_plan.server",
                "--data-dir",
                str(self.data_dir),
                "--port",
                "0",
                "--port-file",
                str(port_file),
                "--test-hooks",
                *(["--multi-user"] if self.multi_user else []),
                *self.extra_args,
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
            env={**os.environ, **self.env},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    "server exited: " + (self.data_dir / "server.log").read_text()[-2000:]
                )
            if port_file.exists():
                port = json.loads(port_file.read_text())["port"]
                self.url = f"http://127.0.0.1:{port}"
                try:
                    if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("server did not start")

    def stop(self, sig: int = signal.SIGTERM, *, reap: bool = True) -> None:
        """Stop the server; with `reap` (default) also kill its sandboxes' leftover processes."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self.proc = None
        if reap:
            self.reap()

    def reap(self) -> int:
        """Kill every leftover process of this server's sandboxes (job runners, commands,
        instance processes): they are detached on purpose, but must not outlive the tests."""
        return reap_processes_under(self.data_dir)

    def kill(self) -> None:
        """SIGKILL the server process only (its detached children, e.g. job runners, live on)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(self.url + "/api/v1/_local/stats", timeout=10).json()
        return data

    def reconcile(self) -> None:
        """Run one reconciler pass now (test hook): it starts after any pass in progress and
        ends before this returns, so what a pass would change has changed afterwards."""
        answer = httpx.post(self.url + "/api/v1/_local/reconcile", timeout=60)
        assert answer.json() == {"reconciled": True}, answer.text

    def mutating_requests(self) -> int:
        """Count of non-GET API requests the server has seen (test hooks)."""
        counts = self.stats()["requests"]
        return sum(
            n
            for key, n in counts.items()
            if not key.startswith(("GET ", "HEAD "))
            and "/_local/" not in key
            and "/auth/" not in key
        )


def reap_processes_under(directory: Path) -> int:
    """SIGKILL the process groups of processes whose cwd or command line is under `directory`."""
    return len(_kill_processes_under(directory))


def reap_and_collect(directory: Path) -> int:
    """Reap like `reap_processes_under`, then collect the exit status of every Popen object of
    this process that is still open: the job runners and instance processes of in-process apps
    are detached on purpose and their Popen objects kept to the end, where each would warn
    (ResourceWarning, after pytest stopped watching) that its child still runs."""
    killed = set(_kill_processes_under(directory))
    for obj in gc.get_objects():
        if isinstance(obj, subprocess.Popen) and obj.returncode is None:
            if obj.pid in killed:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    obj.wait(timeout=10)
            else:
                obj.poll()
    return len(killed)


def _kill_processes_under(directory: Path) -> list[int]:
    root = str(directory.resolve())
    # The path itself, not a prefix of a sibling's (pytest-22 must not match pytest-226).
    mentions = re.compile(re.escape(root) + r"(?=[/\s]|$)")
    killed: list[int] = []
    me = os.getpid()
    own_group = os.getpgrp()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except (OSError, ValueError):
            continue
        if mentions.search(cmdline) or cwd == root or cwd.startswith(root + os.sep):
            pid = int(entry.name)
            with contextlib.suppress(OSError):
                group = os.getpgid(pid)
                # A child started without a session of its own shares pytest's group: killing
                # that group would kill this test run (it lost its summary and exit code).
                if group != own_group:
                    os.killpg(group, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


@dataclass
class UserSession:
    email: str
    token: str
    client: DumontClient
    url: str

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )


# The clients of the users a test made: tests/conftest.py closes them when the test ends.
OPEN_CLIENTS: list[DumontClient] = []


def close_user_clients() -> None:
    while OPEN_CLIENTS:
        OPEN_CLIENTS.pop().close()


def new_user(url: str, prefix: str = "user") -> UserSession:
    """A freshly registered user; its client is closed at the end of the test."""
    email = f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"
    http = httpx.Client(base_url=url, timeout=60)
    client = DumontClient(http, retry=RetryPolicy(attempts=1))
    OPEN_CLIENTS.append(client)
    answer = client.auth.register(email, PASSWORD)
    client.token = answer["token"]
    return UserSession(email, answer["token"], client, url)


def assert_invisible_to(other: UserSession, requests: Iterable[tuple[str, str]]) -> None:
    """User `other` gets 403/404 and no data for every (method, path) of someone else's."""
    with other.http() as http:
        for method, path in requests:
            response = http.request(method, path)
            assert response.status_code in (403, 404), (method, path, response.status_code)
            body = response.json()
            assert set(body) <= {"error", "details"}, (method, path, body)


def cli_env(home: Path, url: str | None = None, token: str | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DUMONT_", "XDG_")) and k not in ("HOME",)
    }
    env["HOME"] = str(home)
    env["COLUMNS"] = "200"
    env["NO_COLOR"] = "1"
    if url:
        env["DUMONT_API_URL"] = url
    if token:
        env["DUMONT_TOKEN"] = token
    return env


def run_cli(
    args: list[str],
    env: dict[str, str],
    cwd: Path | None = None,
    timeout: float = 120,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `dumont ARGS` as a user would, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "dumont_plan", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


def expect_api_error(call: Any, status: int) -> ApiError:
    try:
        call()
    except ApiError as exc:
        assert exc.status_code == status, (exc.status_code, str(exc))
        return exc
    raise AssertionError(f"expected HTTP {status}")


class SilentServer:
    """A loopback port whose connections are accepted and never answered."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted.append(conn)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for conn in self.accepted:
            conn.close()
        self.sock.close()
