"""Wait until a remote object reaches a target state or a terminal failure, with a timeout.

    result = wait_for(
        fetch=lambda: client.jobs.get(job_id),
        done=lambda job: job["status"] == "completed",
        failed=lambda job: job["status"] in ("failed", "cancelled", "timeout"),
        timeout=600,
        on_tick=lambda job: line.update(f"{job['id']}: {job['status']}"),
    )
    result.outcome  # "done" | "failed" | "timeout"

`wait_for` never raises for the outcome itself: the caller decides (the CLI maps "failed" to
exit 5 and "timeout" to exit 4; apply records it per resource). Errors of `fetch` propagate.
`clock` and `sleep` are injectable so tests never sleep on wall-clock time.

`StatusLine` is the live status line shown while waiting: a rich spinner on a terminal, plain
lines (only when the text changes) when the stream is a pipe or a file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from rich.console import Console
from rich.status import Status
from rich.text import Text

from dumont_plan.errors import DumontError

Outcome = Literal["done", "failed", "timeout"]
State = dict[str, Any]


@dataclass(frozen=True)
class WaitResult:
    """How a wait ended: the last state seen, the outcome and the seconds it took."""

    state: State
    outcome: Outcome
    elapsed: float

    @property
    def ok(self) -> bool:
        return self.outcome == "done"


class WaitTimeoutError(DumontError):
    """A wait's own time limit elapsed before the target state (exit 4)."""

    exit_code = 4


class WaitFailedError(DumontError):
    """The waited object reached a terminal failure state (exit 5)."""

    exit_code = 5


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
) -> WaitResult:
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


class StatusLine:
    """A live one-line status on `console` (use as a context manager, call `update(text)`).

    On a terminal it is a rich spinner rewritten in place; otherwise each new text is printed
    as its own line, and repeats are skipped so a log file stays short.
    """

    def __init__(self, console: Console, *, live: bool | None = None) -> None:
        self.console = console
        self.live = console.is_terminal if live is None else live
        self._status: Status | None = None
        self._last: str | None = None

    def __enter__(self) -> StatusLine:
        if self.live:
            self._status = self.console.status(Text(""), spinner="dots")
            self._status.start()
        return self

    def update(self, text: str, key: str | None = None) -> None:
        """Show `text`. Off a terminal it is printed only when `key` (default: the text) changed,
        so a line with a running clock in it is not repeated every tick."""
        if self._status is not None:
            self._status.update(Text(text))
            return
        seen = text if key is None else key
        if seen == self._last:
            return
        self._last = seen
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def print(self, text: str) -> None:
        """A permanent line above the status (e.g. a log line while waiting)."""
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
