"""`Idempotency-Key` for create calls: a retried create replays the first answer.

An additive extension of the local control plane (advertised as `idempotency-key`); the real
platform has none, so the client also adopts objects by name after a crash.

A create that inserts a row gives the key to its own transaction (`idempotent_create` passes it
a `KeyClaim`; the create calls `claim.record(conn, body)` beside its INSERT): the key and the
row it made are committed together, so a control plane killed at any moment never holds a row
without its key, and a retried key never makes a duplicate. The answer stored then is the
object as inserted; it is replaced by the full answer once the create has returned.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse

from dumont_plan.server.context import AppState, User

KEY_TTL_SECONDS = 24 * 3600


# Striped locks: two requests with one (user, key) at once run `create()` once, not twice.
_LOCKS = [threading.Lock() for _ in range(64)]


def _lock_for(user_id: int, key: str) -> threading.Lock:
    return _LOCKS[hash((user_id, key)) % len(_LOCKS)]


def _same_request(method: str, path: str, request: Request) -> bool:
    """Whether a stored key belongs to this request (the /api and /api/v1 mounts are one)."""

    def canonical(p: str) -> str:
        return p.removeprefix("/api/v1").removeprefix("/api")

    return method == request.method and canonical(path) == canonical(request.url.path)


@dataclass
class KeyClaim:
    """One (user, key) about to be used by a create; `record` stores it in the caller's
    transaction (the one that inserts the created row)."""

    user_id: int
    key: str
    method: str
    path: str
    status_code: int
    recorded: bool = False

    def record(self, conn: sqlite3.Connection, body: Any) -> None:
        now = time.time()
        conn.execute(
            "INSERT OR REPLACE INTO idempotency (user_id, key, method, path, status, body, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                self.user_id,
                self.key,
                self.method,
                self.path,
                self.status_code,
                json.dumps(body),
                now,
            ),
        )
        conn.execute("DELETE FROM idempotency WHERE created_at < ?", (now - KEY_TTL_SECONDS,))
        self.recorded = True


def idempotent_create(
    request: Request,
    state: AppState,
    user: User,
    create: Callable[[], Any],
    status_code: int = 201,
) -> JSONResponse:
    """Run `create()` once per (user, Idempotency-Key); replay its JSON answer afterwards.

    The key is stored after `create()` returns, in a transaction of its own: for a create that
    stores nothing (or nothing a crash could leave half-done). A create that inserts a row uses
    `idempotent_create_in_tx`.
    """
    return idempotent_create_in_tx(request, state, user, lambda _claim: create(), status_code)


def idempotent_create_in_tx(
    request: Request,
    state: AppState,
    user: User,
    create: Callable[[KeyClaim | None], Any],
    status_code: int = 201,
) -> JSONResponse:
    """Run `create(claim)` once per (user, Idempotency-Key); replay its JSON answer afterwards.

    `create` calls `claim.record(conn, body)` (when `claim` is not None) in the transaction that
    inserts what it creates. Reusing a key for a different request is a 409: replaying the
    wrong answer would hide it.
    """
    key = request.headers.get("Idempotency-Key")
    if not key or state.settings.real_platform:  # the real platform ignores the header
        return JSONResponse(create(None), status_code=status_code)
    with _lock_for(user.id, key):
        row = state.store.query_one(
            "SELECT method, status, body, path FROM idempotency WHERE user_id = ? AND key = ?",
            (user.id, key),
        )
        if row is not None:
            if not _same_request(str(row["method"]), str(row["path"]), request):
                raise HTTPException(
                    409,
                    f"Idempotency-Key {key!r} was already used for "
                    f"{row['method']} {row['path']}; use a new key for a new request",
                )
            return JSONResponse(
                json.loads(str(row["body"])),
                status_code=int(row["status"]),
                headers={"Idempotent-Replayed": "true"},
            )
        claim = KeyClaim(user.id, key, request.method, request.url.path, status_code)
        body = create(claim)
        with state.store.tx() as conn:
            if claim.recorded:  # the full answer replaces the object as inserted
                conn.execute(
                    "UPDATE idempotency SET body = ? WHERE user_id = ? AND key = ?",
                    (json.dumps(body), user.id, key),
                )
            else:
                claim.record(conn, body)
    return JSONResponse(body, status_code=status_code)
