"""The total size of a workspace, measured while its job runs (`disk_size`).

The file-size rlimit bounds each file, not their total: the runner measures the workspace
itself, at most every `interval` seconds (longer when a walk is slow: never more than a tenth
of the time), with a bounded `os.scandir` walk that follows no symlink and counts allocated
blocks (`st_blocks * 512`), so a sparse file counts what it really holds.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

MAX_ENTRIES = 1_000_000  # a walk stops here; what it counted is then a lower bound


def used_bytes(root: Path, max_entries: int = MAX_ENTRIES) -> int:
    """Bytes allocated under `root` (itself excluded), symlinks not followed."""
    total = 0
    seen = 0
    stack = [str(root)]
    while stack and seen < max_entries:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue  # gone, or unreadable: its files cannot grow through us either
        with entries:
            for entry in entries:
                seen += 1
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                total += info.st_blocks * 512
                if stat.S_ISDIR(info.st_mode):
                    stack.append(entry.path)
    return total


def describe(size: float, gb_bytes: int) -> str:
    """`size` bytes in GB of `disk_size` (`gb_bytes` each): `1.2 GB`."""
    return f"{size / gb_bytes:.3g} GB"


class DiskWatch:
    """Says when a workspace holds more than `limit` bytes (0: no limit)."""

    def __init__(self, root: Path, limit: int, gb_bytes: int, interval: float = 1.0) -> None:
        self.root = root
        self.limit = limit
        self.gb_bytes = max(1, gb_bytes)
        self.interval = interval
        self.next_check = 0.0
        self.error: str | None = None  # set once, when over the limit

    @classmethod
    def of(cls, root: Path, sandbox: dict[str, Any]) -> DiskWatch:
        """The watch a workload's sandbox policy (`isolation.workload_sandbox`) asks for."""
        limit, gb_bytes = sandbox.get("disk_bytes"), sandbox.get("disk_gb_bytes")
        return cls(root, int(limit or 0), int(gb_bytes or 1))

    def exceeded(self, force: bool = False) -> str | None:
        """The error message once the workspace is over its limit, else None (cheap between
        checks, unless `force`)."""
        now = time.monotonic()
        if self.error or self.limit <= 0 or (now < self.next_check and not force):
            return self.error
        used = used_bytes(self.root)
        spent = time.monotonic() - now
        self.next_check = now + max(self.interval, 10 * spent)
        if used <= self.limit:
            return None
        self.error = (
            f"the workspace used {describe(used, self.gb_bytes)}, more than disk_size "
            f"{describe(self.limit, self.gb_bytes)}; raise disk_size"
        )
        return self.error
