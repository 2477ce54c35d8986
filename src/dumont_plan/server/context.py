"""Per-app shared state (settings, store, secret) and the request dependencies."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from dumont_plan.server.security import decode_token
from dumont_plan.server.settings import ServerSettings
from dumont_plan.server.store import Store, loads


@dataclass
class AppState:
    settings: ServerSettings
    store: Store
    secret: str


@dataclass(frozen=True)
class User:
    id: int
    email: str
    settings: dict[str, Any]


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.dumont
    return state


def _unauthorized() -> HTTPException:
    return HTTPException(401, "Not authenticated", headers={"WWW-Authenticate": "Bearer"})


def bearer_claims(request: Request, state: AppState) -> dict[str, Any]:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized()
    claims = decode_token(state.secret, token.strip())
    if claims is None:
        raise _unauthorized()
    revoked = state.store.query_one(
        "SELECT 1 FROM revoked_tokens WHERE jti = ?", (str(claims["jti"]),)
    )
    if revoked is not None:
        raise _unauthorized()
    return claims


def current_user(request: Request, state: Annotated[AppState, Depends(get_state)]) -> User:
    claims = bearer_claims(request, state)
    row = state.store.query_one(
        "SELECT id, email, settings FROM users WHERE email = ?", (str(claims["sub"]),)
    )
    if row is None:
        raise _unauthorized()
    request.state.claims = claims
    return User(id=int(row["id"]), email=str(row["email"]), settings=loads(row["settings"], {}))


def revoke(state: AppState, claims: dict[str, Any]) -> None:
    with state.store.tx() as conn:
        conn.execute(
            "INSERT OR IGNORE INTO revoked_tokens (jti, expires_at) VALUES (?, ?)",
            (str(claims["jti"]), float(claims["exp"])),
        )
        conn.execute("DELETE FROM revoked_tokens WHERE expires_at < ?", (time.time(),))


StateDep = Annotated[AppState, Depends(get_state)]
UserDep = Annotated[User, Depends(current_user)]
