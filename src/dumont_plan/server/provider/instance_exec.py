"""`POST /instances/{id}/exec` (additive): one command in a running instance, as `ssh ID CMD`.

The local control plane has no SSH server per instance; this is what works instead. The
command runs in a sandbox of its own over the instance's workspace, with the instance's
isolation, uid and limits, tagged as the instance's (pause and delete end it too), under a
time limit; its output (stdout and stderr interleaved) is capped.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from typing import Any

from dumont_plan.errors import InstanceError
from dumont_plan.server.context import AppState
from dumont_plan.server.provider import instance_processes as processes
from dumont_plan.server.provider import isolation
from dumont_plan.server.provider.instances import _row, sandbox_of
from dumont_plan.server.provider.sandbox import kill_group

OUTPUT_CAP = 1024 * 1024  # bytes of output kept; the rest is dropped (`truncated`)
MAX_TIMEOUT_SECONDS = 600
# Commands of one user running at once: each holds one of the server's request threads for
# up to MAX_TIMEOUT_SECONDS, so without a cap one user could hold them all (every user's
# requests would then wait).
MAX_RUNNING_PER_USER = 4
_running: dict[tuple[str, int], int] = {}  # (data dir, user id): commands running
_running_lock = threading.Lock()


def exec_in_instance(
    state: AppState, user_id: int, instance_id: int, command: str, timeout: float
) -> dict[str, Any]:
    """Run `bash -c command` in the instance (at most MAX_RUNNING_PER_USER of a user's at
    once; more is a 429)."""
    key = (str(state.settings.data_dir), user_id)
    with _running_lock:
        if _running.get(key, 0) >= MAX_RUNNING_PER_USER:
            raise InstanceError(
                429,
                f"{MAX_RUNNING_PER_USER} of your exec commands are running; wait for one to "
                "end (or lower their timeout_seconds) and try again",
            )
        _running[key] = _running.get(key, 0) + 1
    try:
        return _exec(state, user_id, instance_id, command, timeout)
    finally:
        with _running_lock:
            _running[key] -= 1
            if not _running[key]:
                del _running[key]


def _exec(
    state: AppState, user_id: int, instance_id: int, command: str, timeout: float
) -> dict[str, Any]:
    """Run `bash -c command` in the instance; its exit code, output and duration."""
    row = _row(state, user_id, instance_id)
    status = str(row["actual_status"])
    if status != "running":
        raise InstanceError(
            409, f"Instance {instance_id} is {status}; exec needs it running (resume it first)"
        )
    sandbox = sandbox_of(state, instance_id)
    policy = isolation.workload_sandbox(
        {"disk_size": row["disk_size"]}, state.settings, int(row["user_id"])
    )
    argv, env = processes.command_in(instance_id, sandbox, command, policy, die_with_parent=True)
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=sandbox.workspace,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    reader = CappedReader(proc)
    reader.start()
    try:
        proc.wait(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
    kill_group(proc.pid)  # what the command left behind in its session goes too
    proc.wait()
    reader.join(timeout=5)
    return {
        "instance_id": instance_id,
        "exit_code": None if timed_out else proc.returncode,
        "timed_out": timed_out,
        "output": bytes(reader.kept).decode("utf-8", errors="replace"),
        "truncated": reader.dropped > 0,
        "duration_seconds": round(time.monotonic() - started, 3),
    }


class CappedReader(threading.Thread):
    """Reads a process's output to its end, keeping the first OUTPUT_CAP bytes only: a command
    printing gigabytes costs the control plane 1 MiB, not its memory."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        super().__init__(name="instance-exec-output", daemon=True)
        self.stream = proc.stdout
        self.kept = bytearray()
        self.dropped = 0

    def run(self) -> None:
        if self.stream is None:
            return
        with self.stream:
            while chunk := os.read(self.stream.fileno(), 65536):
                room = OUTPUT_CAP - len(self.kept)
                self.kept += chunk[:room]
                self.dropped += max(0, len(chunk) - room)
