"""Machine history and blacklists (contract §9), per user.

Every boot outcome of an instance is an *attempt*: success (with `time_to_ready_seconds`) or
failure (with a `failure_stage`: `creating`, `loading`, `error`, ...). After each recorded
failure the automatic rules of §9.2 run on the user's attempts of the last 72 hours:

1. the latest 3+ attempts are consecutive failures -> `auto` entry for 24 h;
2. failure rate >= 70 % with a failure in a severe stage (`rejected`, `loading`, `creating`)
   -> 48 h;
3. failure rate >= 70 % otherwise -> 24 h.

A success never adds an entry (the real code evaluates after every attempt; a ban triggered by
a success would be a surprise). An active `manual` entry is never replaced by an automatic one.
Expired entries stay in the table, reported inactive (`is_active: false`), until replaced or
removed: reads have no side effects. Unlike the real platform (global data, quirk 13), every
row belongs to one user. Provider ids are free strings; the local market's machines are `local`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dumont_plan.server.store import Store

# A read: (sql, params) -> rows.
Query = Callable[[str, Sequence[Any]], list[sqlite3.Row]]


def store_query(store: Store) -> Query:
    return lambda sql, params: store.query(sql, tuple(params))


LOCAL_PROVIDER = "local"
WINDOW_SECONDS = 72 * 3600
MIN_ATTEMPTS = 3
SEVERE_STAGES = frozenset({"rejected", "loading", "creating"})
FAILURE_RATE_THRESHOLD = 0.7


def iso(epoch: float | None) -> str | None:
    """Naive-UTC ISO timestamp (the contract's usual form) of an epoch, or None."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None).isoformat()


def reliability_status(total: int, success_rate: float | None) -> str:
    if total < MIN_ATTEMPTS or success_rate is None:
        return "unknown"
    if success_rate >= 0.9:
        return "excellent"
    if success_rate >= 0.7:
        return "good"
    if success_rate >= 0.5:
        return "fair"
    return "poor"


@dataclass(frozen=True)
class Attempt:
    provider: str
    machine_id: str
    success: bool
    offer_id: str | None = None
    gpu_name: str | None = None
    price_per_hour: float | None = None
    instance_id: str | None = None
    failure_stage: str | None = None
    failure_reason: str | None = None
    time_to_ready_seconds: float | None = None


def record_attempt(
    conn: sqlite3.Connection, user_id: int, attempt: Attempt, now: float | None = None
) -> None:
    """Insert one attempt (inside the caller's transaction), then apply the automatic rules."""
    at = time.time() if now is None else now
    conn.execute(
        "INSERT INTO machine_attempts (user_id, provider, machine_id, offer_id, gpu_name, "
        "price_per_hour, attempted_at, success, instance_id, failure_stage, failure_reason, "
        "time_to_ready_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            user_id,
            attempt.provider,
            attempt.machine_id,
            attempt.offer_id,
            attempt.gpu_name,
            attempt.price_per_hour,
            at,
            int(attempt.success),
            attempt.instance_id,
            attempt.failure_stage,
            attempt.failure_reason,
            attempt.time_to_ready_seconds,
        ),
    )
    if not attempt.success:
        apply_auto_rules(conn, user_id, attempt.provider, attempt.machine_id, attempt.gpu_name, at)


def apply_auto_rules(
    conn: sqlite3.Connection,
    user_id: int,
    provider: str,
    machine_id: str,
    gpu_name: str | None,
    now: float,
) -> None:
    rows = conn.execute(
        "SELECT success, failure_stage, failure_reason FROM machine_attempts "
        "WHERE user_id = ? AND provider = ? AND machine_id = ? AND attempted_at >= ? "
        "ORDER BY id DESC",
        (user_id, provider, machine_id, now - WINDOW_SECONDS),
    ).fetchall()
    if len(rows) < MIN_ATTEMPTS:
        return
    failures = [r for r in rows if not r["success"]]
    rate = len(failures) / len(rows)
    streak = 0
    for r in rows:
        if r["success"]:
            break
        streak += 1
    if streak >= MIN_ATTEMPTS:
        hours, reason = 24, f"{streak} consecutive failures"
    elif rate >= FAILURE_RATE_THRESHOLD:
        severe = sorted({str(r["failure_stage"]) for r in failures} & SEVERE_STAGES)
        if severe:
            hours = 48
            reason = f"failure rate {rate:.0%} (severe stage: {', '.join(severe)})"
        else:
            hours, reason = 24, f"failure rate {rate:.0%}"
    else:
        return
    current = _entry_row(conn, user_id, provider, machine_id)
    if current is not None and current["blacklist_type"] != "auto" and _active(current, now):
        return
    last_reason = failures[0]["failure_reason"] if failures else None
    _upsert(
        conn,
        user_id,
        provider,
        machine_id,
        blacklist_type="auto",
        reason=reason,
        expires_at=now + hours * 3600,
        gpu_name=gpu_name,
        counts=(len(rows), len(failures), rate, last_reason),
        now=now,
    )


def _active(row: sqlite3.Row, now: float) -> bool:
    expires = row["expires_at"]
    return expires is None or float(expires) > now


def _entry_row(
    conn: sqlite3.Connection, user_id: int, provider: str, machine_id: str
) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM machine_blacklist WHERE user_id = ? AND provider = ? AND machine_id = ?",
        (user_id, provider, machine_id),
    ).fetchone()
    return row


def _counts(
    conn: sqlite3.Connection, user_id: int, provider: str, machine_id: str
) -> tuple[int, int, float, str | None]:
    row = conn.execute(
        "SELECT COUNT(*) AS total, COALESCE(SUM(success = 0), 0) AS failed FROM machine_attempts "
        "WHERE user_id = ? AND provider = ? AND machine_id = ?",
        (user_id, provider, machine_id),
    ).fetchone()
    total, failed = int(row["total"]), int(row["failed"])
    last = conn.execute(
        "SELECT failure_reason FROM machine_attempts WHERE user_id = ? AND provider = ? "
        "AND machine_id = ? AND success = 0 ORDER BY id DESC LIMIT 1",
        (user_id, provider, machine_id),
    ).fetchone()
    return total, failed, (failed / total if total else 0.0), last[0] if last else None


def _upsert(
    conn: sqlite3.Connection,
    user_id: int,
    provider: str,
    machine_id: str,
    *,
    blacklist_type: str,
    reason: str,
    expires_at: float | None,
    gpu_name: str | None,
    counts: tuple[int, int, float, str | None],
    now: float,
) -> None:
    total, failed, rate, last_reason = counts
    conn.execute(
        "INSERT INTO machine_blacklist (user_id, provider, machine_id, blacklist_type, "
        "total_attempts, failed_attempts, failure_rate, last_failure_reason, blacklisted_at, "
        "expires_at, reason, gpu_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (user_id, provider, machine_id) DO UPDATE SET "
        "blacklist_type = excluded.blacklist_type, total_attempts = excluded.total_attempts, "
        "failed_attempts = excluded.failed_attempts, failure_rate = excluded.failure_rate, "
        "last_failure_reason = excluded.last_failure_reason, "
        "blacklisted_at = excluded.blacklisted_at, expires_at = excluded.expires_at, "
        "reason = excluded.reason, gpu_name = COALESCE(excluded.gpu_name, gpu_name)",
        (
            user_id,
            provider,
            machine_id,
            blacklist_type,
            total,
            failed,
            round(rate, 4),
            last_reason,
            now,
            expires_at,
            reason,
            gpu_name,
        ),
    )


def add_manual(
    conn: sqlite3.Connection,
    user_id: int,
    provider: str,
    machine_id: str,
    reason: str,
    duration_hours: float | None,
    gpu_name: str | None,
    now: float | None = None,
) -> None:
    """Upsert a `manual` entry (None duration = permanent)."""
    at = time.time() if now is None else now
    _upsert(
        conn,
        user_id,
        provider,
        machine_id,
        blacklist_type="manual",
        reason=reason,
        expires_at=None if duration_hours is None else at + duration_hours * 3600,
        gpu_name=gpu_name,
        counts=_counts(conn, user_id, provider, machine_id),
        now=at,
    )


def blacklist_entry(row: sqlite3.Row, now: float | None = None) -> dict[str, Any]:
    at = time.time() if now is None else now
    return {
        "id": int(row["id"]),
        "provider": str(row["provider"]),
        "machine_id": str(row["machine_id"]),
        "blacklist_type": str(row["blacklist_type"]),
        "total_attempts": int(row["total_attempts"]),
        "failed_attempts": int(row["failed_attempts"]),
        "failure_rate": float(row["failure_rate"]),
        "last_failure_reason": row["last_failure_reason"],
        "blacklisted_at": iso(row["blacklisted_at"]),
        "expires_at": iso(row["expires_at"]),
        "is_active": _active(row, at),
        "reason": row["reason"],
        "gpu_name": row["gpu_name"],
    }


def attempt_entry(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": int(row["id"]),
        "provider": str(row["provider"]),
        "machine_id": str(row["machine_id"]),
        "offer_id": row["offer_id"],
        "gpu_name": row["gpu_name"],
        "price_per_hour": row["price_per_hour"],
        "attempted_at": iso(row["attempted_at"]),
        "success": bool(row["success"]),
        "instance_id": row["instance_id"],
        "failure_stage": row["failure_stage"],
        "failure_reason": row["failure_reason"],
        "time_to_ready_seconds": row["time_to_ready_seconds"],
    }


STATS_SQL = """
SELECT a.provider, a.machine_id, COUNT(*) AS total,
       COALESCE(SUM(a.success), 0) AS successful,
       AVG(CASE WHEN a.success = 1 THEN a.time_to_ready_seconds END) AS avg_ready,
       MAX(a.attempted_at) AS last_seen,
       (SELECT b.gpu_name FROM machine_attempts b WHERE b.user_id = a.user_id
          AND b.provider = a.provider AND b.machine_id = a.machine_id
          AND b.gpu_name IS NOT NULL ORDER BY b.id DESC LIMIT 1) AS gpu_name
FROM machine_attempts a
WHERE a.user_id = ? {where}
GROUP BY a.provider, a.machine_id
"""


def machine_stats(
    query: Query,
    user_id: int,
    *,
    provider: str | None = None,
    machine_id: str | None = None,
    now: float | None = None,
) -> list[dict[str, Any]]:
    """Per-machine stats over all the user's attempts (optionally one provider / machine)."""
    at = time.time() if now is None else now
    where = ""
    params: list[Any] = [user_id]
    if provider is not None:
        where += " AND a.provider = ?"
        params.append(provider)
    if machine_id is not None:
        where += " AND a.machine_id = ?"
        params.append(machine_id)
    rows = query(STATS_SQL.format(where=where), params)
    listed = active_blacklist(query, user_id, now=at)
    stats = []
    for r in rows:
        total, ok = int(r["total"]), int(r["successful"])
        rate = ok / total if total else 0.0
        avg = r["avg_ready"]
        stats.append(
            {
                "provider": str(r["provider"]),
                "machine_id": str(r["machine_id"]),
                "total_attempts": total,
                "successful_attempts": ok,
                "failed_attempts": total - ok,
                "success_rate": round(rate, 4),
                "avg_time_to_ready": None if avg is None else round(float(avg), 3),
                "reliability_status": reliability_status(total, rate),
                "is_blacklisted": (str(r["provider"]), str(r["machine_id"])) in listed,
                "last_seen": iso(r["last_seen"]),
                "gpu_name": r["gpu_name"],
            }
        )
    return stats


def active_blacklist(
    query: Query, user_id: int, now: float | None = None
) -> dict[tuple[str, str], str | None]:
    """(provider, machine_id) -> reason of the user's active entries."""
    at = time.time() if now is None else now
    rows = query(
        "SELECT provider, machine_id, reason FROM machine_blacklist "
        "WHERE user_id = ? AND (expires_at IS NULL OR expires_at > ?)",
        (user_id, at),
    )
    return {(str(r["provider"]), str(r["machine_id"])): r["reason"] for r in rows}


@dataclass(frozen=True)
class Annotation:
    """History annotations of an offer for one user."""

    is_blacklisted: bool = False
    blacklist_reason: str | None = None
    success_rate: float | None = None
    total_attempts: int = 0
    reliability_status: str = "unknown"

    def as_dict(self) -> dict[str, Any]:
        return {
            "is_blacklisted": self.is_blacklisted,
            "blacklist_reason": self.blacklist_reason,
            "success_rate": self.success_rate,
            "total_attempts": self.total_attempts,
            "reliability_status": self.reliability_status,
        }


NEUTRAL = Annotation()


def offer_annotations(
    query: Query, user_id: int, provider: str = LOCAL_PROVIDER
) -> dict[str, Annotation]:
    """machine_id -> annotation for every machine the user has history or an entry for."""
    listed = {m: r for (p, m), r in active_blacklist(query, user_id).items() if p == provider}
    rows = query(
        "SELECT machine_id, COUNT(*) AS total, COALESCE(SUM(success), 0) AS ok "
        "FROM machine_attempts WHERE user_id = ? AND provider = ? GROUP BY machine_id",
        (user_id, provider),
    )
    result: dict[str, Annotation] = {}
    for r in rows:
        total, ok = int(r["total"]), int(r["ok"])
        rate = round(ok / total, 4) if total else None
        machine = str(r["machine_id"])
        result[machine] = Annotation(
            machine in listed, listed.get(machine), rate, total, reliability_status(total, rate)
        )
    for machine, reason in listed.items():
        if machine not in result:
            result[machine] = Annotation(True, reason)
    return result
