"""Fault injection for robustness tests (only with test hooks or a configured fault rate).

- queued faults: `POST /api/v1/_local/faults {"count":2,"status":503,"retry_after":1}` makes
  the next `count` API requests answer `status` (with `Retry-After` when given); `"status": 0`
  is a *drop*: the request is processed but its answer lost (502), as when a connection breaks
  after the server acted; `"method"` and `"path"` (e.g. `"POST"`, `"/api/v1/jobs/"`) keep the
  fault for the first matching request, the others pass untouched;
- a random fault rate (`ServerSettings.fault_rate`, or `PUT /api/v1/_local/faults/rate
  {"rate": 0.2}` at run time): 500/503/429 answers, delays and dropped answers at that rate,
  seeded.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import deque
from dataclasses import dataclass
from typing import Literal

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.types import ASGIApp

LOCAL_PREFIX = "/api/v1/_local"


DROP = 0  # the status of a queued drop: processed, answer lost


@dataclass
class Fault:
    status: int
    retry_after: float | None = None
    method: str | None = None  # only for a request with this method (None: any)
    path: str | None = None  # only for a request with this path (None: any)

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or self.path == path
        )


class FaultQueue:
    def __init__(self, rate: float = 0.0, seed: int = 1) -> None:
        self._queue: deque[Fault] = deque()
        self._lock = threading.Lock()
        self.rate = rate
        self._rng = random.Random(seed)
        self.injected = 0

    def push(self, fault: Fault, count: int) -> None:
        with self._lock:
            self._queue.extend([fault] * count)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def next(self, method: str = "", path: str = "") -> Fault | Literal["delay", "drop"] | None:
        with self._lock:
            for fault in self._queue:
                if fault.matches(method, path):
                    self._queue.remove(fault)
                    self.injected += 1
                    return "drop" if fault.status == DROP else fault
            if self.rate > 0 and self._rng.random() < self.rate:
                self.injected += 1
                roll = self._rng.random()
                if roll < 0.3:
                    return Fault(503, 0.05)
                if roll < 0.5:
                    return Fault(429, 0.05)
                if roll < 0.7:
                    return Fault(500)
                if roll < 0.85:
                    return "delay"
                return "drop"
        return None


class FaultMiddleware(BaseHTTPMiddleware):
    def __init__(self, app: ASGIApp, faults: FaultQueue) -> None:
        super().__init__(app)
        self.faults = faults

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        path = request.url.path
        if not path.startswith("/api") or path.startswith(LOCAL_PREFIX):
            return await call_next(request)
        fault = self.faults.next(request.method, path)
        if fault is None:
            return await call_next(request)
        if fault == "delay":
            await asyncio.sleep(0.2)
            return await call_next(request)
        if isinstance(fault, str):  # "drop"
            # Process the request (as a real server might) but lose the answer.
            await call_next(request)
            return JSONResponse({"error": "connection dropped"}, status_code=502)
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        message = {
            500: "Internal server error",
            503: "Service unavailable",
            429: "Too many requests",
        }.get(fault.status, "Injected fault")
        return JSONResponse({"error": message}, status_code=fault.status, headers=headers)
