"""The state lock: an exclusive, non-blocking `flock` on `.dumont/state.lock` plus a holder record.

The holder record (pid, host, user, command, started_at) is what a second process is told:
"state is locked by pid 1234 on host X since T (dumont apply)". A crashed holder's flock is
released by the kernel, so the next apply proceeds; `force_unlock` clears the record left behind
(or, with `force`, removes a lock whose holder still runs).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import json
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from dumont_plan.errors import LockError

LOCK_FILE = "state.lock"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _holder_text(holder: dict[str, Any]) -> str:
    pid = holder.get("pid", "?")
    host = holder.get("host", "?")
    since = holder.get("started_at", "?")
    command = holder.get("command")
    text = f"pid {pid} on host {host} since {since}"
    return f"{text} ({command})" if command else text


class StateLock:
    """An exclusive, non-blocking `flock` on `.dumont/state.lock` plus a holder record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def acquire(self, command: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise LockError(f"cannot lock {self.path}: {exc.strerror}") from exc
            holder = _wait_for_holder(self.path)
            raise LockError(
                f"state is locked by {_holder_text(holder)}",
                "if that process is gone, run `dumont force-unlock`",
            ) from exc
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "user": _user(),
            "command": command,
            "started_at": _now(),
        }
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(holder) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
        self._handle = handle

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        with contextlib.suppress(OSError):
            handle.seek(0)
            handle.truncate()
            handle.flush()
        with contextlib.suppress(OSError):
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _wait_for_holder(lock_path: Path, timeout: float = 1.0) -> dict[str, Any]:
    """The holder record; one that took the lock this instant writes it a moment later."""
    deadline = time.monotonic() + timeout
    holder = read_holder(lock_path)
    while not holder and time.monotonic() < deadline:
        time.sleep(0.02)
        holder = read_holder(lock_path)
    return holder


def held_by(lock_path: Path) -> str | None:
    """Who holds the lock now (`pid 12 on host h since ... (dumont apply)`), else None;
    takes nothing (a shared try-lock, released at once)."""
    try:
        handle = open(lock_path, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _holder_text(read_holder(lock_path))
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return None


def read_holder(lock_path: Path) -> dict[str, Any]:
    """The holder record in a lock file ({} when empty or unreadable)."""
    try:
        data = json.loads(lock_path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class UnlockResult:
    removed: bool  # a holder record was cleared
    holder: dict[str, Any]
    forced: bool = False


def force_unlock(state_path: Path, *, force: bool = False) -> UnlockResult:
    """Clear a stale lock. A lock still held by a live process is refused unless `force`."""
    lock_path = state_path.with_name(LOCK_FILE)
    if not lock_path.exists():
        return UnlockResult(False, {})
    holder = read_holder(lock_path)
    with open(lock_path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if not force:
                raise LockError(
                    f"state is locked by {_holder_text(holder)}, and that process still holds it",
                    "stop it first, or pass --force to remove the lock anyway "
                    "(two applies could then run at once)",
                ) from exc
            lock_path.unlink(missing_ok=True)
            return UnlockResult(True, holder, forced=True)
        handle.seek(0)
        handle.truncate()
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return UnlockResult(bool(holder), holder)
