"""Shared pieces of the apply package: the result and the crash test hook."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

CRASH_ENV = "DUMONT_TEST_CRASH_AFTER"
WAIT_TARGETS = ("none", "running", "completed")


@dataclass
class ApplyResult:
    """What an apply did, by address (errors are redacted, one line each)."""

    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # address -> why
    wait_timeouts: list[str] = field(default_factory=list)
    wait_failures: list[str] = field(default_factory=list)
    bugs: list[BaseException] = field(default_factory=list)  # not DumontError: re-raised later
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped

    @property
    def exit_code(self) -> int:
        """0 ok; 3 partial (a change failed); else 4 a wait timed out; 5 a waited job failed."""
        waits = set(self.wait_timeouts) | set(self.wait_failures)
        if any(address not in waits for address in self.failed):
            return 3
        if self.wait_timeouts:
            return 4
        if self.wait_failures:
            return 5
        return 3 if self.skipped else 0


_crash_lock = threading.Lock()
_crash_count = 0


def crash_point() -> None:
    """After a ledger write: die here when DUMONT_TEST_CRASH_AFTER says so (tests only).

    `os._exit(137)` is what SIGKILL looks like to the parent: no cleanup, no flush, the
    ledger as last written. The invariant tests use it to kill apply after every write.
    """
    global _crash_count
    limit = os.environ.get(CRASH_ENV)
    if not limit:
        return
    with _crash_lock:
        _crash_count += 1
        if _crash_count >= int(limit):
            os._exit(137)
