"""`dumont plan` against a server that accepts connections and never answers.

The live lists are read in the background while the state is read (apply/observe.Prefetch), in
daemon threads (client/parallel.py): an error found meanwhile, or Ctrl-C, ends the command at
once instead of after the HTTP timeout.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import cli_env

SPEC = 'version: 1\nproject: hung\njobs:\n  a: {command: "true"}\n'


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


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def start_plan(tmp_path: Path, url: str) -> subprocess.Popen[str]:
    (tmp_path / "dumont.yaml").write_text(SPEC)
    home = tmp_path / "home"
    home.mkdir()
    return subprocess.Popen(
        [sys.executable, "-m", "dumont_plan", "plan"],
        env=cli_env(home, url, "some-token"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], within: float) -> tuple[str, float]:
    started = time.monotonic()
    try:
        _, err = proc.communicate(timeout=within)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return err, time.monotonic() - started


def test_a_bad_state_is_reported_without_waiting_for_the_server(
    tmp_path: Path, silent: SilentServer
) -> None:
    (tmp_path / ".dumont").mkdir()
    (tmp_path / ".dumont" / "state.json").write_text("{not json")
    err, took = finish(start_plan(tmp_path, silent.url), within=30)
    assert "is not valid dumont state" in err and "Traceback" not in err
    assert took < 15  # the unanswered list read is abandoned, not waited for


def test_ctrl_c_while_the_lists_are_read_ends_the_plan_at_once(
    tmp_path: Path, silent: SilentServer
) -> None:
    proc = start_plan(tmp_path, silent.url)
    deadline = time.monotonic() + 30
    while not silent.accepted and time.monotonic() < deadline:
        time.sleep(0.05)  # until the plan's first request is in flight
    assert silent.accepted, "the plan never connected"
    proc.send_signal(signal.SIGINT)
    err, took = finish(proc, within=30)
    assert proc.returncode == 130 and "Traceback" not in err
    assert took < 15
