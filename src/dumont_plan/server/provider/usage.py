"""CPU and memory use of instances' process trees, sampled from Linux `/proc`.

An instance's processes are its `onstart_cmd` leader's session (started with
`start_new_session`) and the leader's descendants (a sandboxed command runs in a session of its
own under bwrap, the leader), both found in one scan of `/proc`. CPU % is the
change of user+system time between two samples (at most one scan per `MIN_INTERVAL` seconds);
memory is the summed RSS in MB. Without `/proc` nothing is sampled and readers get None.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
MIN_INTERVAL = 1.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_MB = (os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096) / 2**20


@dataclass(frozen=True)
class Usage:
    cpu_percent: float
    rss_mb: float
    # False for an instance's first sample: no interval yet, its cpu_percent is a placeholder.
    measured: bool = True


_lock = threading.Lock()
_last_scan = 0.0
_ticks: dict[int, tuple[float, int]] = {}  # instance id -> (time, cpu ticks) of the last sample
_usage: dict[int, Usage] = {}


@dataclass(frozen=True)
class _Proc:
    parent: int
    session: int
    ticks: int
    pages: int


def _scan() -> dict[int, _Proc]:
    """pid -> its parent, session, cpu ticks and rss pages (live processes only)."""
    found: dict[int, _Proc] = {}
    try:
        entries = list(PROC.iterdir())
    except OSError:
        return found
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        if len(fields) < 22 or fields[0] in ("Z", "X"):
            continue
        ticks = int(fields[11]) + int(fields[12])
        found[int(entry.name)] = _Proc(int(fields[1]), int(fields[3]), ticks, int(fields[21]))
    return found


def _tree_totals(procs: dict[int, _Proc], leader: int) -> tuple[int, int]:
    """(cpu ticks, rss pages) of the leader's session and of all the leader's descendants."""
    children: dict[int, list[int]] = {}
    for pid, proc in procs.items():
        children.setdefault(proc.parent, []).append(pid)
    members = {pid for pid, proc in procs.items() if proc.session == leader}
    seen: set[int] = set()
    stack = [leader] if leader in procs else []
    while stack:
        pid = stack.pop()
        if pid not in seen:
            seen.add(pid)
            stack.extend(children.get(pid, []))
    members |= seen
    return sum(procs[p].ticks for p in members), sum(procs[p].pages for p in members)


def sample_usage(leaders: dict[int, int], now: float) -> None:
    """Sample the instances given as {instance id: session leader pid} (throttled)."""
    global _last_scan
    with _lock:
        if not leaders:
            _ticks.clear()
            _usage.clear()
            return
        if now - _last_scan < MIN_INTERVAL or not PROC.is_dir():
            return
        _last_scan = now
        procs = _scan()
        for instance_id in list(_ticks):
            if instance_id not in leaders:
                _ticks.pop(instance_id, None)
                _usage.pop(instance_id, None)
        for instance_id, pid in leaders.items():
            ticks, pages = _tree_totals(procs, pid)
            previous = _ticks.get(instance_id)
            _ticks[instance_id] = (now, ticks)
            if previous is None:
                _usage[instance_id] = Usage(0.0, round(pages * PAGE_MB, 1), measured=False)
                continue
            elapsed = max(now - previous[0], 1e-6)
            percent = max(0.0, (ticks - previous[1]) / CLOCK_TICKS / elapsed * 100)
            _usage[instance_id] = Usage(round(percent, 1), round(pages * PAGE_MB, 1))


def usage_of(instance_id: int) -> Usage | None:
    with _lock:
        return _usage.get(instance_id)
