"""A job's ranks on the local executor: `num_nodes` sandboxes run as one group.

A job of `num_nodes` N runs N ranks on this machine, each in a sandbox of its own (the same
bubblewrap sandbox as a one-node job: `isolation.wrap_command`), started together by the job's
one runner (`runner.py`), so everything the control plane knows of a job (the runner's pid,
`state.json`, re-attach after a restart, cancel, the timeout) holds for the whole group.

- Layout in the job's directory: rank 0 is the job's own sandbox (`workspace/`, `env/`,
  `run.sh`, `job.log`), exactly a one-node job's; rank r >= 1 has `rank-<r>/` (its
  `workspace/`, `env/` and `run.sh`) and its log `rank-<r>.log`.
- Each rank gets its own copy of the job's source and workdir, and runs the whole script
  (source, `pip_packages`, `setup_script`, command) itself, as each node of a real cluster does:
  ranks share no file, and the sandbox shows a rank no other job's files.
- The torch-distributed environment (only when N > 1; a one-node job gets none of it, so a
  Hugging Face Trainer there does not start a process group): `MASTER_ADDR=127.0.0.1`,
  `MASTER_PORT` (a free loopback port the control plane picks when it launches the runner),
  `RANK` = `NODE_RANK` = r, `WORLD_SIZE` = `NUM_NODES` = N, `LOCAL_RANK=0`,
  `LOCAL_WORLD_SIZE=1`: one process per node. The sandboxes keep the host's network, so the
  ranks meet over loopback (`torch.distributed.init_process_group("gloo")` works as is).
- Logs: rank r's is `log_name(r)`; under SkyPilot one log holds every node's output (rank 0's).
- The group: it runs while any rank runs; it completes when every rank exited 0; the first rank
  that fails (or leaves its sandbox with a non-zero code) fails it: the other ranks are killed
  at once and the error names the rank (`rank 1: command exited with code 3`). A timeout, a
  cancel or a retry is the whole group's.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dumont_plan.server.provider.sandbox import Sandbox, kill_group, read_json

MASTER_ADDR = "127.0.0.1"
LOG_FILE = "job.log"
SCRIPT_FILE = "run.sh"
# After a rank's main process exits, how long its output may still flow before leftovers die.
DRAIN_SECONDS = 0.5


def count(spec: dict[str, Any]) -> int:
    """How many ranks a job's spec asks for (1 for one node, and for an old spec)."""
    try:
        return max(1, int(spec.get("num_nodes") or 1))
    except (TypeError, ValueError):
        return 1


def sandbox_of(job_dir: Path, rank: int) -> Sandbox:
    return Sandbox(job_dir if rank == 0 else job_dir / f"rank-{rank}")


def script_of(job_dir: Path, rank: int) -> Path:
    return sandbox_of(job_dir, rank).root / SCRIPT_FILE


def log_name(rank: int) -> str:
    """The file name of rank `rank`'s log in the job's directory."""
    return LOG_FILE if rank == 0 else f"rank-{rank}.log"


def log_problem(job_dir: Path, nodes: int, rank: int) -> str | None:
    """Why rank `rank`'s log of a job of `nodes` nodes cannot be read (the 422), or None."""
    if nodes == 1 and rank:
        return f"this job runs on 1 node: rank 0 only, not {rank}"
    if rank >= nodes:
        return f"this job runs on {nodes} nodes: ranks 0-{nodes - 1}, not {rank}"
    if rank and (read_json(job_dir / "spec.json") or {}).get("executor") == "skypilot":
        return "SkyPilot keeps one log of every node's output: leave out rank"
    return None


def free_port() -> int:
    """A loopback TCP port nobody listens on now (the kernel's pick): the group's MASTER_PORT."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((MASTER_ADDR, 0))
        return int(probe.getsockname()[1])


def launch_args(spec: dict[str, Any]) -> list[str]:
    """The runner's extra arguments for a job's launch: a fresh MASTER_PORT for several ranks."""
    return ["--master-port", str(free_port())] if count(spec) > 1 else []


def rank_env(rank: int, world: int, port: int) -> dict[str, str]:
    """The torch-distributed variables of rank `rank` of `world` (one process per node)."""
    return {
        "MASTER_ADDR": MASTER_ADDR,
        "MASTER_PORT": str(port),
        "RANK": str(rank),
        "WORLD_SIZE": str(world),
        "NODE_RANK": str(rank),
        "NUM_NODES": str(world),
        "LOCAL_RANK": "0",
        "LOCAL_WORLD_SIZE": "1",
    }


def pgids(state: dict[str, Any] | None) -> tuple[int | None, ...]:
    """The ranks' process groups a runner's `state.json` names (to kill without `/proc`)."""
    state = state or {}
    return (state.get("child_pgid"), *(state.get("child_pgids") or []))


def finalize(job_dir: Path, spec: dict[str, Any]) -> None:
    """Remove the ranks' sandboxes past rank 0 (their outputs are not kept: rank 0's are)."""
    for rank in range(1, count(spec)):
        sandbox_of(job_dir, rank).destroy()
        script_of(job_dir, rank).unlink(missing_ok=True)


def drop_logs(job_dir: Path, spec: dict[str, Any]) -> None:
    for rank in range(count(spec)):
        (job_dir / log_name(rank)).unlink(missing_ok=True)


class Log(Protocol):
    def feed(self, data: bytes) -> None: ...
    def note(self, message: str) -> None: ...
    def flush(self) -> None: ...


@dataclass
class RankRun:
    """One rank's running script: its process (a group of its own), output and step pipe."""

    rank: int
    proc: subprocess.Popen[bytes]
    control_fd: int
    log: Log
    step: str | None = None
    step_error: str | None = None
    exited_at: float | None = None
    done: bool = False
    control_buffer: bytes = b""

    @property
    def out_fd(self) -> int:
        if self.proc.stdout is None:
            raise RuntimeError("a rank's script was started without a stdout pipe")
        return self.proc.stdout.fileno()


@dataclass
class Outcome:
    """How a group's pump ended: the deadline passed, or which rank failed first."""

    timed_out: bool = False
    failed_rank: int | None = None


class RankGroup:
    """Relays every rank's output to its log and step markers to `on_step`, until each rank
    ended; the first failed rank stops the others. Once `stopping()` (a cancel: the runner
    kills every rank) a rank's end is no failure."""

    def __init__(
        self,
        runs: list[RankRun],
        on_step: Callable[[RankRun], None],
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.runs = runs
        self.on_step = on_step
        self.stopping = stopping
        self.outcome = Outcome()

    @property
    def pgids(self) -> list[int]:
        return [run.proc.pid for run in self.runs]

    def kill_all(self) -> None:
        for run in self.runs:
            kill_group(run.proc.pid)

    def pump(self, deadline: float, over_disk: Callable[[], bool]) -> Outcome:
        selector = selectors.DefaultSelector()
        owner: dict[int, RankRun] = {}
        for run in self.runs:
            for fd in (run.out_fd, run.control_fd):
                selector.register(fd, selectors.EVENT_READ)
                owner[fd] = run
        try:
            while not all(run.done for run in self.runs):
                now = time.time()
                if now >= deadline or over_disk():
                    self.outcome.timed_out = now >= deadline
                    self.kill_all()
                    break
                self._check_exits(now)
                for key, _ in selector.select(min(0.2, max(0.0, deadline - now))):
                    fd = int(key.fd)
                    self._read(owner[fd], fd, selector)
        finally:
            selector.close()
            for run in self.runs:
                with contextlib.suppress(OSError):
                    os.close(run.control_fd)
        for run in self.runs:  # whatever is still buffered in the pipes after the kills
            with contextlib.suppress(OSError):
                os.set_blocking(run.out_fd, False)
                while chunk := os.read(run.out_fd, 65536):
                    run.log.feed(chunk)
        return self.outcome

    def _check_exits(self, now: float) -> None:
        for run in self.runs:
            if run.exited_at is None and run.proc.poll() is not None:
                run.exited_at = now
                failed = run.proc.returncode != 0 and self.outcome.failed_rank is None
                if failed and not self.stopping():
                    self._fail(run)
            if not run.done and run.exited_at is not None and now - run.exited_at > DRAIN_SECONDS:
                run.done = True  # background leftovers keep its stdout open: they die now
                kill_group(run.proc.pid)

    def _fail(self, run: RankRun) -> None:
        self.outcome.failed_rank = run.rank
        if len(self.runs) == 1:
            return
        message = f"rank {run.rank} failed (exit code {run.proc.returncode}): stopping the others"
        for other in self.runs:
            other.log.note(message)
            if other is not run:
                kill_group(other.proc.pid)

    def _read(self, run: RankRun, fd: int, selector: selectors.BaseSelector) -> None:
        data = os.read(fd, 65536)
        if not data:
            selector.unregister(fd)
            if fd == run.out_fd:
                run.done = True
            return
        if fd == run.out_fd:
            run.log.feed(data)
            return
        run.control_buffer += data
        *lines, run.control_buffer = run.control_buffer.split(b"\n")
        for line in lines:
            kind, _, value = line.decode(errors="replace").partition(" ")
            if kind == "step":
                run.step = value
                self.on_step(run)
            elif kind == "error":
                run.step_error = value
