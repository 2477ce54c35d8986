"""The SQLite store: schema version, WAL, migrations applied once and atomically."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from dumont_plan.server import store as store_module
from dumont_plan.server.store import Store, _discover_migrations


def latest_migration() -> int:
    return max(number for number, _ in _discover_migrations())


def add_user(store: Store, email: str) -> int:
    return store.execute(
        "INSERT INTO users (email, password_hash, settings, created_at) VALUES (?, 'x', '{}', '')",
        (email,),
    )


def test_schema_version_is_the_latest_migration(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    assert store.schema_version == latest_migration()
    with closing(sqlite3.connect(tmp_path / "db.sqlite3")) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == latest_migration()


def test_database_is_in_wal_mode(tmp_path: Path) -> None:
    Store(tmp_path / "db.sqlite3")
    # WAL is a property of the file
    with closing(sqlite3.connect(tmp_path / "db.sqlite3")) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reopening_applies_nothing_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "db.sqlite3"
    # A migration that cannot run twice (the second INSERT would break the primary key).
    extra = (latest_migration() + 1, "INSERT INTO meta (key, value) VALUES ('applied', 'once')")
    good = _discover_migrations()
    monkeypatch.setattr(store_module, "_discover_migrations", lambda: [*good, extra])
    first = Store(path)
    user_id = add_user(first, "kept@example.com")
    first.close()

    second = Store(path)
    assert second.schema_version == extra[0]
    assert [tuple(r) for r in second.query("SELECT key, value FROM meta")] == [("applied", "once")]
    row = second.query_one("SELECT id FROM users WHERE email = ?", ("kept@example.com",))
    assert row is not None and row["id"] == user_id


@pytest.mark.parametrize("round_", range(5))
def test_concurrent_first_opens_migrate_once(tmp_path: Path, round_: int) -> None:
    """Several servers (here: stores with their own locks) opening a new database at once."""
    path = tmp_path / "db.sqlite3"
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_store() -> None:
        barrier.wait()
        try:
            Store(path).close()
        except BaseException as exc:  # collected and checked below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Store(path).schema_version == latest_migration()


def test_a_failing_migration_rolls_back_entirely(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "db.sqlite3"
    good = _discover_migrations()
    bad = (latest_migration() + 1, "CREATE TABLE half_done (a TEXT);\nTHIS IS NOT SQL")
    monkeypatch.setattr(store_module, "_discover_migrations", lambda: [*good, bad])
    with pytest.raises(sqlite3.OperationalError):
        Store(path)
    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == latest_migration()
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "half_done" not in tables
    assert "users" in tables


def test_tx_rolls_back_on_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    with pytest.raises(RuntimeError), store.tx() as conn:
        conn.execute(
            "INSERT INTO users (email, password_hash, created_at) VALUES ('gone@x.io', 'x', '')"
        )
        raise RuntimeError("abort")
    assert store.query("SELECT * FROM users") == []
    assert add_user(store, "one@x.io") == 1


def test_a_migration_that_lands_after_a_higher_one_still_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Branches land out of order: m0005 merged after m0008 must run on a database at 8."""
    good = _discover_migrations()
    late_number = latest_migration() + 1
    later = (late_number + 1, "INSERT INTO meta (key, value) VALUES ('later', 'yes')")
    monkeypatch.setattr(store_module, "_discover_migrations", lambda: [*good, later])
    path = tmp_path / "db.sqlite"
    assert Store(path).schema_version == late_number + 1
    late = (late_number, "INSERT INTO meta (key, value) VALUES ('late', 'yes')")
    monkeypatch.setattr(store_module, "_discover_migrations", lambda: [*good, late, later])
    reopened = Store(path)
    assert reopened.schema_version == late_number + 1  # the highest, not the last run
    with closing(sqlite3.connect(path)) as raw:
        rows = dict(raw.execute("SELECT key, value FROM meta WHERE key IN ('late', 'later')"))
    assert rows == {"late": "yes", "later": "yes"}
    Store(path)  # and nothing runs twice (a second INSERT would break the primary key)


def test_a_database_from_before_the_table_counts_its_version_as_applied(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    Store(path)
    with closing(sqlite3.connect(path)) as raw:
        raw.execute("DROP TABLE schema_migrations")  # as made by an older dumont
    Store(path)  # would fail re-running m0001 (tables exist) if the version were ignored
    with closing(sqlite3.connect(path)) as raw:
        applied = {n for (n,) in raw.execute("SELECT number FROM schema_migrations")}
    assert applied == {n for n, _ in _discover_migrations()}
