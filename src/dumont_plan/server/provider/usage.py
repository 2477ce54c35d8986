"""CPU and memory use of instances' process trees, sampled from Linux `/proc`.

An instance's processes share the session of its `onstart_cmd` leader (started with
`start_new_session`), so one scan of `/proc` groups every process by session id. CPU % is the
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


_lock = threading.Lock()
_last_scan = 0.0
_ticks: dict[int, tuple[float, int]] = {}  # instance id -> (time, cpu ticks) of the last sample
_usage: dict[int, Usage] = {}


def _scan() -> dict[int, tuple[int, int]]:
    """session id -> (cpu ticks, rss pages) summed over its processes."""
    sessions: dict[int, tuple[int, int]] = {}
    try:
        entries = list(PROC.iterdir())
    except OSError:
        return sessions
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
        sid = int(fields[3])
        ticks, pages = sessions.get(sid, (0, 0))
        sessions[sid] = (ticks + int(fields[11]) + int(fields[12]), pages + int(fields[21]))
    return sessions


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
        sessions = _scan()
        for instance_id in list(_ticks):
            if instance_id not in leaders:
                _ticks.pop(instance_id, None)
                _usage.pop(instance_id, None)
        for instance_id, pid in leaders.items():
            ticks, pages = sessions.get(pid, (0, 0))
            previous = _ticks.get(instance_id)
            _ticks[instance_id] = (now, ticks)
            if previous is None:
                _usage[instance_id] = Usage(0.0, round(pages * PAGE_MB, 1))
                continue
            elapsed = max(now - previous[0], 1e-6)
            percent = max(0.0, (ticks - previous[1]) / CLOCK_TICKS / elapsed * 100)
            _usage[instance_id] = Usage(round(percent, 1), round(pages * PAGE_MB, 1))


def usage_of(instance_id: int) -> Usage | None:
    with _lock:
        return _usage.get(instance_id)
