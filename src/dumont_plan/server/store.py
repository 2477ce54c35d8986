"""SQLite (WAL) persistence with numbered migrations; one connection per thread.

Migrations live in `server/migrations/mNNNN_<name>.py`, each with a `SQL` string; they are applied
in number order and the applied version is kept in `PRAGMA user_version`.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import pkgutil
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dumont_plan.server import migrations


def _discover_migrations() -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for info in pkgutil.iter_modules(migrations.__path__):
        if not info.name.startswith("m") or "_" not in info.name:
            continue
        number = int(info.name[1:].split("_", 1)[0])
        module = importlib.import_module(f"{migrations.__name__}.{info.name}")
        found.append((number, str(module.SQL)))
    found.sort()
    numbers = [n for n, _ in found]
    if len(set(numbers)) != len(numbers):
        raise RuntimeError(f"duplicate migration numbers: {numbers}")
    return found


class Store:
    """Thread-safe access to the control plane's SQLite database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self.migrate()

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @property
    def schema_version(self) -> int:
        return int(self._connect().execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        """Apply the pending migrations, one process at a time.

        An exclusive flock beside the database serialises servers opening it at once: the
        switch to WAL and the migrations then never race (SQLite can answer "database is
        locked" at once, without waiting, while another connection changes the journal mode).
        """
        with open(self.path.with_name(self.path.name + ".lock"), "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                self._apply_migrations()
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _apply_migrations(self) -> None:
        """Every migration not applied yet, by number, whatever the order they landed in (a
        branch's m0005 merged after m0008 still runs); `user_version` keeps the highest."""
        conn = self._connect()
        with self._write_lock:
            applied = self._applied_migrations(conn)
            for number, sql in _discover_migrations():
                if number in applied:
                    continue
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in sql.split(";\n"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute("INSERT INTO schema_migrations (number) VALUES (?)", (number,))
                    version = max(number, self.schema_version)
                    conn.execute(f"PRAGMA user_version = {version}")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise

    def _applied_migrations(self, conn: sqlite3.Connection) -> set[int]:
        """The numbers applied; a database made before this table (only `user_version`)
        counts every number up to its version as applied."""
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (number INTEGER PRIMARY KEY)")
        rows = conn.execute("SELECT number FROM schema_migrations").fetchall()
        if not rows and self.schema_version:
            legacy = [(n,) for n, _ in _discover_migrations() if n <= self.schema_version]
            conn.executemany("INSERT INTO schema_migrations (number) VALUES (?)", legacy)
            return {n for (n,) in legacy}
        return {int(r[0]) for r in rows}

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (serialised within this process)."""
        conn = self._connect()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        return list(self._connect().execute(sql, params).fetchall())

    def query_one(
        self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()
    ) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._connect().execute(sql, params).fetchone()
        return row

    def execute(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> int:
        """Run one write statement in its own transaction; return lastrowid."""
        with self.tx() as conn:
            cur = conn.execute(sql, params)
            return int(cur.lastrowid or 0)

    def close(self) -> None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def loads(value: str | None, default: Any = None) -> Any:
    if value is None:
        return default
    return json.loads(value)
