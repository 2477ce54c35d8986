"""`dumont plan` against a server that accepts connections and never answers.

The live lists are read in the background while the state is read (apply/observe.Prefetch), in
daemon threads (client/parallel.py): an error found meanwhile, or Ctrl-C, ends the command at
once instead of after the HTTP timeout.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import SilentServer, cli_env

SPEC = 'version: 1\nproject: hung\njobs:\n  a: {command: "true"}\n'


def start_plan(tmp_path: Path, url: str, early_reads: str = "1") -> subprocess.Popen[str]:
    (tmp_path / "dumont.yaml").write_text(SPEC)
    home = tmp_path / "home"
    home.mkdir()
    return subprocess.Popen(
        [sys.executable, "-m", "dumont_plan", "plan"],
        env={**cli_env(home, url, "some-token"), "DUMONT_EARLY_READS": early_reads},
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


@pytest.mark.parametrize("early_reads", ["1", "0"])  # cli/early.py's reader, the plan's own
def test_ctrl_c_while_the_lists_are_read_ends_the_plan_at_once(
    tmp_path: Path, silent: SilentServer, early_reads: str
) -> None:
    proc = start_plan(tmp_path, silent.url, early_reads)
    deadline = time.monotonic() + 30
    while not silent.accepted and time.monotonic() < deadline:
        time.sleep(0.05)  # until the plan's first request is in flight
    assert silent.accepted, "the plan never connected"
    proc.send_signal(signal.SIGINT)
    err, took = finish(proc, within=30)
    # With the early reader the Ctrl-C lands while the CLI loads: then the exit is 130, or the
    # signal itself when it landed in an exec() of generated code (dataclasses; CPython then
    # re-raises SIGINT at exit). A shell reads both as 130; no traceback either way.
    ends = {130} if early_reads == "0" else {130, -signal.SIGINT}
    assert proc.returncode in ends and "Traceback" not in err
    assert took < 15
