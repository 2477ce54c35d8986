"""`Idempotency-Key` for create calls: a retried create replays the first answer.

An additive extension of the local control plane (advertised as `idempotency-key`); the real
platform has none, so the client also adopts objects by name after a crash.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from dumont_plan.server.context import AppState, User

KEY_TTL_SECONDS = 24 * 3600


def idempotent_create(
    request: Request,
    state: AppState,
    user: User,
    create: Callable[[], Any],
    status_code: int = 201,
) -> JSONResponse:
    """Run `create()` once per (user, Idempotency-Key); replay its JSON answer afterwards."""
    key = request.headers.get("Idempotency-Key")
    if not key:
        return JSONResponse(create(), status_code=status_code)
    row = state.store.query_one(
        "SELECT status, body, path FROM idempotency WHERE user_id = ? AND key = ?",
        (user.id, key),
    )
    if row is not None:
        return JSONResponse(
            json.loads(str(row["body"])),
            status_code=int(row["status"]),
            headers={"Idempotent-Replayed": "true"},
        )
    body = create()
    with state.store.tx() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO idempotency "
            "(user_id, key, method, path, status, body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
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
