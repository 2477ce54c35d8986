"""Login throttling and the bounded pool that hashes passwords.

`LoginThrottle` counts failed logins per account and per client address in a sliding window;
once either reaches its limit, logins for it answer 429 with Retry-After (before any hashing)
until the oldest failure leaves the window. It lives in memory: a restart forgets it.

`HashPool` runs scrypt (CPU- and memory-heavy) on a few dedicated threads with a bounded
number of waiting calls, so a flood of logins or registrations cannot take the threads that
serve every other request; past the bound the call answers 503 with Retry-After at once.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from fastapi import HTTPException

T = TypeVar("T")

# Keys kept at most (oldest dropped first): a flood of distinct e-mails cannot grow memory.
MAX_KEYS = 10_000


class LoginThrottle:
    def __init__(
        self,
        per_account: int,
        per_client: int,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = {"account": per_account, "client": per_client}
        self.window = window_seconds
        self.clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def check(self, account: str, client: str) -> None:
        """Raise 429 (with Retry-After) when the account or the client is locked out."""
        now = self.clock()
        wait = 0.0
        with self._lock:
            for kind, value in (("account", account), ("client", client)):
                times = self._recent((kind, value), now)
                limit = self.limits[kind]
                if limit > 0 and len(times) >= limit:
                    wait = max(wait, times[-limit] + self.window - now)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise HTTPException(
                429,
                f"Too many failed logins; try again in {seconds} s",
                headers={"Retry-After": str(seconds)},
            )

    def failed(self, account: str, client: str) -> None:
        now = self.clock()
        with self._lock:
            for key in (("account", account), ("client", client)):
                times = self._failures.pop(key, None) or deque()
                times.append(now)
                limit = max(self.limits.values())
                while len(times) > limit:  # only the last `limit` failures matter
                    times.popleft()
                self._failures[key] = times  # re-inserted: most recently failed last
            while len(self._failures) > MAX_KEYS:
                del self._failures[next(iter(self._failures))]

    def succeeded(self, account: str) -> None:
        """A right password clears the account's failures (not the client's)."""
        with self._lock:
            self._failures.pop(("account", account), None)


class HashPool:
    def __init__(self, workers: int, max_waiting: int) -> None:
        self.workers = max(1, workers)
        self.max_waiting = max_waiting
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="dumont-hash")
        self._pending = 0
        self._lock = threading.Lock()

    async def run(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the pool; 503 + Retry-After when too many calls already wait."""
        with self._lock:
            if self._pending >= self.workers + self.max_waiting:
                raise HTTPException(
                    503,
                    "Too many logins in progress; retry shortly",
                    headers={"Retry-After": "1"},
                )
            self._pending += 1
        try:
            return await asyncio.wrap_future(self._executor.submit(fn))
        finally:
            with self._lock:
                self._pending -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
