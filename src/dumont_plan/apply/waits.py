"""Waiting: poll a remote object until a target state, a terminal failure or a timeout.

    result = wait_for(
        fetch=lambda: client.jobs.get(job_id),
        done=lambda job: job.status == "completed",
        failed=lambda job: job.is_failed,
        timeout=600,
        on_tick=lambda job: line.update(f"{job.id}: {job.status}"),
    )
    result.outcome  # "done" | "failed" | "timeout"

`wait_for` never raises for the outcome itself: the caller decides (`dumont job wait` maps
"failed" to exit 5 and "timeout" to exit 4; apply records it per resource). Errors of `fetch`
propagate. `clock` and `sleep` are injectable so tests never sleep on wall-clock time.

After a change, apply waits through `wait_resource` (read-only):

    live = wait_resource(client, handler, ops, address, remote_id, target, timeout=..., emit=...)

It ends at the target (`running`, `completed`), at a terminal failure (WaitFailedError, exit 5)
or when `timeout` seconds pass (WaitTimeoutError, exit 4). While it polls it emits
`wait_progress` events (on each status change, and every few seconds), and with `logs` the
new lines of a job's log as `log` events, redacted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from dumont_plan.apply.events import ApplyEvent, EventSink, Redactor
from dumont_plan.client import DumontClient
from dumont_plan.client.jobs import LogCursor, log_command
from dumont_plan.errors import ApiError, ApplyInterrupted, WaitFailedError, WaitTimeoutError
from dumont_plan.kinds.base import RegisteredHandler
from dumont_plan.kinds.ops import RegisteredOps
from dumont_plan.wire_models import WireModel

Outcome = Literal["done", "failed", "timeout"]
State = TypeVar("State")  # what `fetch` returns: a read model (Job, Instance) or a dict

PROGRESS_EVERY = 5.0  # seconds between wait_progress events while the status stays the same


@dataclass(frozen=True)
class WaitResult(Generic[State]):
    """How a wait ended: the last state seen, the outcome and the seconds it took."""

    state: State
    outcome: Outcome
    elapsed: float

    @property
    def ok(self) -> bool:
        return self.outcome == "done"


def wait_for(
    fetch: Callable[[], State],
    done: Callable[[State], bool],
    failed: Callable[[State], bool],
    *,
    timeout: float | None = None,
    on_tick: Callable[[State], None] | None = None,
    poll: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WaitResult[State]:
    """Poll `fetch()` every `poll` seconds until `done(state)` or `failed(state)`.

    The first fetch happens at once. `on_tick(state)` runs after every fetch (for a status line
    or to stream logs). With `timeout` (seconds, None = forever) the wait ends with outcome
    "timeout" once that much time passed; the last sleep is shortened so the wait never
    overshoots the limit by more than one fetch.
    """
    if poll <= 0:
        raise ValueError("poll must be positive")
    start = clock()
    while True:
        state = fetch()
        if on_tick is not None:
            on_tick(state)
        elapsed = clock() - start
        if done(state):
            return WaitResult(state, "done", elapsed)
        if failed(state):
            return WaitResult(state, "failed", elapsed)
        if timeout is not None and elapsed >= timeout:
            return WaitResult(state, "timeout", elapsed)
        pause = poll if timeout is None else min(poll, max(timeout - elapsed, 0.0))
        sleep(pause)


def wait_resource(
    client: DumontClient,
    handler: RegisteredHandler,
    ops: RegisteredOps,
    address: str,
    remote_id: str,
    target: str,
    *,
    action: str,
    timeout: float | None,
    poll: float,
    logs: bool,
    emit: EventSink,
    redact: Redactor,
    stop: threading.Event | None = None,
) -> WireModel:
    """Wait for `remote_id` to reach `target`; return its last live state (see module doc).

    Setting `stop` (Ctrl-C in the CLI) ends the wait at once with ApplyInterrupted.
    """
    stopped = stop or threading.Event()

    def pause(seconds: float) -> None:
        if stopped.wait(seconds):
            status = last["status"]
            interrupted = ApplyInterrupted(
                f"stopped waiting for {address} (interrupted); it was "
                f"{status or 'not yet reported'} and goes on on the server"
            )
            interrupted.last_status = status
            raise interrupted

    started = time.monotonic()
    log = LogFollower(client, handler, address, remote_id, emit, redact) if logs else None
    last: dict[str, Any] = {"status": None, "at": 0.0}

    def tick(live: WireModel) -> None:
        status = handler.status(live)
        if log is not None:
            log.poll(status)
        now = time.monotonic()
        if status == last["status"] and now - last["at"] < PROGRESS_EVERY:
            return
        last.update(status=status, at=now)
        emit(
            ApplyEvent(
                "wait_progress",
                address=address,
                action=action,
                remote_id=remote_id,
                status=status,
                elapsed=now - started,
                data={"target": target},
            )
        )

    result: WaitResult[WireModel] = wait_for(
        fetch=lambda: ops.get(client, remote_id),
        done=lambda live: handler.wait_done(live, target),
        failed=handler.is_failed,
        timeout=timeout,
        on_tick=tick,
        poll=poll,
        sleep=pause,
    )
    if log is not None:
        log.poll(handler.status(result.state), final=True)
    status = handler.status(result.state)
    if result.outcome == "timeout":
        raise WaitTimeoutError(
            f"waited {result.elapsed:.0f}s for {address} to be {target}; it is {status}",
            "raise --wait-timeout, or check it with `dumont show`",
        )
    if result.outcome == "failed":
        detail = result.state.raw.get("error_message")  # any kind's, as the server says it
        text = f"{address} ended {status} while waiting for {target}"
        raise WaitFailedError(
            redact(f"{text}: {detail}" if detail else text),
            f"see its logs: {log_command(remote_id, detail)}" if handler.kind == "job" else None,
        )
    return result.state


class LogFollower:
    """Streams the new lines of a job's log as `log` events while a wait polls it.

    A LogCursor does the reading (each line once; a log that restarted is read again).
    """

    def __init__(
        self,
        client: DumontClient,
        handler: RegisteredHandler,
        address: str,
        remote_id: str,
        emit: EventSink,
        redact: Redactor,
    ) -> None:
        self.handler = handler
        self.address = address
        self.remote_id = remote_id
        self.emit = emit
        self.redact = redact
        self.cursor = LogCursor(client.jobs, remote_id)

    def poll(self, status: str, final: bool = False) -> None:
        if self.handler.kind != "job" or status in ("scheduled", "pending", "provisioning"):
            return
        try:
            lines = self.cursor.read(final=final)
        except ApiError:
            return
        for line in lines:
            # A carriage return (a progress bar) also ends a line, as it did before the cursor.
            for part in line.splitlines() or [""]:
                self.emit(
                    ApplyEvent(
                        "log",
                        address=self.address,
                        remote_id=self.remote_id,
                        line=self.redact(part),
                    )
                )
