"""Waits after a change (read-only): poll until the target state or a terminal failure.

    live = wait_resource(client, handler, address, remote_id, target, timeout=..., emit=...)

A wait ends at the target (`running`, `completed`), at a terminal failure (WaitEndedFailed,
exit 5) or when `timeout` seconds pass (WaitTimedOut, exit 4). While it polls it emits
`wait_progress` events (on each status change, and every few seconds), and with `logs` the
new lines of a job's log as `log` events, redacted.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from dumont_plan.apply.base import ApplyInterrupted, WaitEndedFailed, WaitTimedOut
from dumont_plan.apply.events import ApplyEvent, EventSink, Redactor
from dumont_plan.apply.polling import wait_for
from dumont_plan.client import DumontClient
from dumont_plan.errors import ApiError
from dumont_plan.kinds.base import BaseHandler

PROGRESS_EVERY = 5.0  # seconds between wait_progress events while the status stays the same


def wait_resource(
    client: DumontClient,
    handler: BaseHandler,
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
) -> dict[str, Any]:
    """Wait for `remote_id` to reach `target`; return its last live state (see module doc).

    Setting `stop` (Ctrl-C in the CLI) ends the wait at once with ApplyInterrupted.
    """
    stopped = stop or threading.Event()

    def pause(seconds: float) -> None:
        if stopped.wait(seconds):
            raise ApplyInterrupted(f"stopped waiting for {address} (interrupted)")

    started = time.monotonic()
    log = LogFollower(client, handler, address, remote_id, emit, redact) if logs else None
    last: dict[str, Any] = {"status": None, "at": 0.0}

    def tick(live: dict[str, Any]) -> None:
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

    result = wait_for(
        fetch=lambda: handler.get(client, remote_id),
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
        raise WaitTimedOut(
            f"waited {result.elapsed:.0f}s for {address} to be {target}; it is {status}",
            "raise --wait-timeout, or check it with `dumont show`",
        )
    if result.outcome == "failed":
        detail = result.state.get("error_message")
        text = f"{address} ended {status} while waiting for {target}"
        raise WaitEndedFailed(
            redact(f"{text}: {detail}" if detail else text),
            f"see its logs: dumont job logs {remote_id}" if handler.kind == "job" else None,
        )
    return result.state


class LogFollower:
    """Streams the new lines of a job's log as `log` events while a wait polls it."""

    def __init__(
        self,
        client: DumontClient,
        handler: BaseHandler,
        address: str,
        remote_id: str,
        emit: EventSink,
        redact: Redactor,
    ) -> None:
        self.client = client
        self.handler = handler
        self.address = address
        self.remote_id = remote_id
        self.emit = emit
        self.redact = redact
        self.seen = 0

    def poll(self, status: str, final: bool = False) -> None:
        if self.handler.kind != "job" or status in ("pending", "provisioning"):
            return
        try:
            text = str(self.client.jobs.logs(self.remote_id).get("logs") or "")
        except ApiError:
            return
        if len(text) < self.seen:
            self.seen = 0  # the log was rotated or cut: start over
        fresh = text[self.seen :]
        if not final and "\n" in fresh:
            fresh = fresh[: fresh.rindex("\n") + 1]  # whole lines only until the end
        elif not final:
            return
        self.seen += len(fresh)
        for line in fresh.splitlines():
            self.emit(
                ApplyEvent(
                    "log", address=self.address, remote_id=self.remote_id, line=self.redact(line)
                )
            )
