"""The automatic blacklist rules of §9.2 on a real store, with a pinned clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from dumont_plan.server.provider.history import (
    Attempt,
    add_manual,
    machine_stats,
    record_attempt,
    reliability_status,
    store_query,
)
from dumont_plan.server.store import Store

NOW = 1_800_000_000.0
HOUR = 3600.0


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "db.sqlite3")
    store.execute(
        "INSERT INTO users (id, email, password_hash, created_at) VALUES (1, 'a@b.c', 'x', 'now')"
    )
    return store


def record(store: Store, outcomes: str, stage: str = "loading", start: float = NOW) -> None:
    """Record attempts on machine m1 one minute apart: 'S' success, 'F' failure."""
    with store.tx() as conn:
        for i, outcome in enumerate(outcomes):
            ok = outcome == "S"
            attempt = Attempt(
                provider="vast",
                machine_id="m1",
                success=ok,
                gpu_name="RTX 4090",
                failure_stage=None if ok else stage,
                failure_reason=None if ok else f"failure {i}",
            )
            record_attempt(conn, 1, attempt, start + i * 60)


def entry(store: Store) -> dict[str, object] | None:
    row = store.query_one("SELECT * FROM machine_blacklist WHERE machine_id = 'm1'")
    return None if row is None else dict(row)


def test_two_failures_are_not_enough(store: Store) -> None:
    record(store, "FF")
    assert entry(store) is None


def test_three_consecutive_failures_ban_for_24_hours(store: Store) -> None:
    record(store, "SFFF", stage="rejected")
    found = entry(store)
    assert found is not None
    assert found["blacklist_type"] == "auto"
    assert found["reason"] == "3 consecutive failures"
    assert found["expires_at"] == pytest.approx(NOW + 3 * 60 + 24 * HOUR)
    assert (found["total_attempts"], found["failed_attempts"]) == (4, 3)
    assert found["last_failure_reason"] == "failure 3"


def test_high_failure_rate_with_a_severe_stage_bans_for_48_hours(store: Store) -> None:
    record(store, "FFSFFSFFSFF", stage="creating")  # 8/11 = 73 %, never 3 in a row
    found = entry(store)
    assert found is not None
    assert found["reason"] == "failure rate 73% (severe stage: creating)"
    assert found["expires_at"] == pytest.approx(NOW + 10 * 60 + 48 * HOUR)


def test_high_failure_rate_otherwise_bans_for_24_hours(store: Store) -> None:
    record(store, "FFSFFSFFSFF", stage="error")
    found = entry(store)
    assert found is not None
    assert found["reason"] == "failure rate 73%"
    assert found["expires_at"] == pytest.approx(NOW + 10 * 60 + 24 * HOUR)


def test_a_success_does_not_touch_the_entry(store: Store) -> None:
    record(store, "FFF")
    before = entry(store)
    record(store, "S", start=NOW + HOUR)  # 3/4 failed: a failure here would renew the ban
    assert entry(store) == before


def test_only_the_last_72_hours_count(store: Store) -> None:
    record(store, "FF", start=NOW - 100 * HOUR)
    record(store, "F")
    assert entry(store) is None


def test_an_active_manual_entry_is_kept(store: Store) -> None:
    with store.tx() as conn:
        add_manual(conn, 1, "vast", "m1", "known bad", None, None, NOW - 10)
    record(store, "FFF")
    found = entry(store)
    assert found is not None
    assert (found["blacklist_type"], found["reason"], found["expires_at"]) == (
        "manual",
        "known bad",
        None,
    )


def test_an_expired_manual_entry_is_replaced(store: Store) -> None:
    with store.tx() as conn:
        add_manual(conn, 1, "vast", "m1", "old", 1, None, NOW - 5 * HOUR)
    record(store, "FFF")
    found = entry(store)
    assert found is not None and found["blacklist_type"] == "auto"


def test_stats_and_reliability_thresholds(store: Store) -> None:
    record(store, "SSSSSSSSSF")
    (stats,) = machine_stats(store_query(store), 1, now=NOW + HOUR)
    assert stats["total_attempts"] == 10 and stats["success_rate"] == 0.9
    assert stats["reliability_status"] == "excellent"
    assert stats["gpu_name"] == "RTX 4090"
    assert [reliability_status(2, 1.0), reliability_status(3, 0.7)] == ["unknown", "good"]
    assert [reliability_status(3, 0.5), reliability_status(3, 0.49)] == ["fair", "poor"]
