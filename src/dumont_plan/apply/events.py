"""What `apply` reports while it runs: event types, secret redaction and the NDJSON writer.

    apply_start      {changes: n, parallelism}
    change_start     {address, action, remote_id?}
    wait_progress    {address, action, remote_id, status, elapsed}
    log              {address, remote_id, line}            (only with --logs)
    change_done      {address, action, remote_id, elapsed}
    change_failed    {address, action, remote_id?, elapsed, error}
    change_skipped   {address, action, error}              (error says which dependency failed)
    apply_done       {done: [...], failed: {...}, skipped: {...}, elapsed, exit_code}

Every event is one JSON object on one line (`--json`), with `type`, `timestamp` (Unix seconds)
and the keys above; keys whose value is None are left out. `apply.py` emits them; the CLI
either writes them as NDJSON (`NdjsonWriter`) or draws them for people. Every text that could
carry a secret (errors, log lines) goes through a `Redactor` first, which knows the secret
values resolved so far and replaces them with `(sensitive)`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

EventType = Literal[
    "apply_start",
    "change_start",
    "wait_progress",
    "log",
    "change_done",
    "change_failed",
    "change_skipped",
    "apply_done",
]

SENSITIVE = "(sensitive)"


@dataclass(frozen=True)
class ApplyEvent:
    """One thing that happened during an apply."""

    type: EventType
    address: str | None = None
    action: str | None = None
    remote_id: str | None = None
    elapsed: float | None = None
    error: str | None = None
    status: str | None = None
    line: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    timestamp: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "timestamp": round(self.timestamp, 3)}
        for key in ("address", "action", "remote_id", "status", "line", "error"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.elapsed is not None:
            out["elapsed"] = round(self.elapsed, 3)
        out.update(self.data)
        return out


EventSink = Callable[[ApplyEvent], None]


class Redactor:
    """Replaces every known secret value in a text with `(sensitive)`. Thread-safe."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        for value in secrets:
            self.add(value)

    def add(self, value: str) -> None:
        # Very short values would redact ordinary words; a secret that short is not one.
        if isinstance(value, str) and len(value) >= 4:
            with self._lock:
                self._values.add(value)

    def __call__(self, text: str) -> str:
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            if value in text:
                text = text.replace(value, SENSITIVE)
        return text

    def scrub(self, data: Any) -> Any:
        """A copy of a JSON-like value with every string redacted."""
        if isinstance(data, str):
            return self(data)
        if isinstance(data, dict):
            return {key: self.scrub(value) for key, value in data.items()}
        if isinstance(data, list | tuple):
            return [self.scrub(value) for value in data]
        return data


class NdjsonWriter:
    """Writes each event as one JSON line and flushes, so a pipe reader sees it at once."""

    def __init__(self, stream: TextIO, redact: Redactor | None = None) -> None:
        self.stream = stream
        self.redact = redact or Redactor()
        self._lock = threading.Lock()

    def __call__(self, event: ApplyEvent) -> None:
        line = json.dumps(self.redact.scrub(event.to_dict()), default=str, sort_keys=False)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()
