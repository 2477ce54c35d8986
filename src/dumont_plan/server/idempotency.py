"""`Idempotency-Key` for create calls: a retried create replays the first answer.

An additive extension of the local control plane (advertised as `idempotency-key`); the real
platform has none, so the client also adopts objects by name after a crash.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
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


def idempotent_create(
    request: Request,
    state: AppState,
    user: User,
    create: Callable[[], Any],
    status_code: int = 201,
) -> JSONResponse:
    """Run `create()` once per (user, Idempotency-Key); replay its JSON answer afterwards.

    Reusing a key for a different request is a 409: replaying the wrong answer would hide it.
    """
    key = request.headers.get("Idempotency-Key")
    if not key:
        return JSONResponse(create(), status_code=status_code)
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
        body = create()
        with state.store.tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO idempotency (user_id, key, method, path, status, body, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    user.id,
                    key,
                    request.method,
                    request.url.path,
                    status_code,
                    json.dumps(body),
                    time.time(),
                ),
            )
            conn.execute(
                "DELETE FROM idempotency WHERE created_at < ?", (time.time() - KEY_TTL_SECONDS,)
            )
    return JSONResponse(body, status_code=status_code)
