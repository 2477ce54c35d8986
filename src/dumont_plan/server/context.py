"""Per-app shared state (settings, store, secret, clock) and the request dependencies."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from dumont_plan.server.login_guard import HashPool, LoginThrottle
from dumont_plan.server.security import decode_token
from dumont_plan.server.settings import ServerSettings
from dumont_plan.server.store import Store, loads


class Clock:
    """Wall-clock time plus an offset that only a test hook moves (`POST /_local/clock`): what
    waits on policy time (serverless idle timers, savings) reads `now()`, so a test advances
    time instead of sleeping through a timeout. Process and boot timings stay on real time."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._guard = threading.Lock()

    @property
    def offset(self) -> float:
        return self._offset

    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> float:
        """Move this clock forward by `seconds` (never back); the new `now()`."""
        with self._guard:
            self._offset += max(0.0, seconds)
        return self.now()


@dataclass
class AppState:
    settings: ServerSettings
    store: Store
    secret: str
    throttle: LoginThrottle = field(init=False)
    hash_pool: HashPool = field(init=False)
    clock: Clock = field(default_factory=Clock)
    # Per-app services a feature creates on first use (name -> object), and what stops them
    # when the app shuts down (run after the reconciler has stopped).
    services: dict[str, Any] = field(default_factory=dict)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        s = self.settings
        self.throttle = LoginThrottle(
            s.login_max_failures, s.login_max_failures_per_client, s.login_window_seconds
        )
        self.hash_pool = HashPool(s.hash_workers, s.hash_max_waiting)


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
        "SELECT id, email, settings, token_generation FROM users WHERE id = ?", (claims["uid"],)
    )
    # The account the token was issued for, unchanged: same id and e-mail, and no logout-all
    # since (a removed account's e-mail registered again is another id).
    if (
        row is None
        or str(row["email"]) != str(claims["sub"])
        or int(row["token_generation"]) != claims["gen"]
    ):
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
