"""`/api/v1/auth`: register, login (email or username), logout (revokes), logout-all, me.

Login and register hash on the bounded pool (server/login_guard.py): they are `async` so that
waiting for it takes none of the threads that serve the other routes. Failed logins are
throttled per account and per client address (429 + Retry-After).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from dumont_plan.server.context import AppState, StateDep, UserDep, bearer_claims, revoke
from dumont_plan.server.security import (
    hash_password,
    issue_token,
    verify_password,
    verify_unknown_user,
)
from dumont_plan.server.store import dumps

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _email(value: str) -> str:
    value = value.strip().lower()
    if not EMAIL_RE.match(value):
        raise ValueError("value is not a valid email address")
    return value


Email = Annotated[str, AfterValidator(_email)]


# An e-mail or a password longer than this is a 422 (a body may hold up to 1 MiB).
CREDENTIAL_MAX = 1024


class LoginRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True, str_max_length=CREDENTIAL_MAX)

    username: Email = Field(alias="email", description="Account e-mail (`email` or `username`).")
    password: str = Field(min_length=1)


MIN_PASSWORD = 8


def _password_rule(value: str) -> str:
    if not value.strip():
        raise ValueError(f"password must have at least {MIN_PASSWORD} characters, not all spaces")
    return value


class RegisterRequest(BaseModel):
    model_config = ConfigDict(str_max_length=CREDENTIAL_MAX)

    email: Email
    password: Annotated[str, Field(min_length=MIN_PASSWORD), AfterValidator(_password_rule)]


class LoginResponse(BaseModel):
    success: bool
    user: str
    token: str


router = APIRouter(prefix="/auth", tags=["auth"])


REGISTRATION_CLOSED = (
    "Registration is closed: this control plane is single-user (its local user only); "
    "start it with `dumont server start --multi-user` to let others register"
)
THROTTLED: dict[int | str, dict[str, Any]] = {
    429: {"description": "Too many failed logins (see Retry-After)"}
}
BUSY: dict[int | str, dict[str, Any]] = {
    503: {"description": "Too many logins in progress (see Retry-After)"}
}


def _issue(state: AppState, user_id: int, email: str, generation: int) -> str:
    ttl = state.settings.token_ttl_seconds
    return issue_token(state.secret, email, ttl, user_id=user_id, generation=generation)


def _create_user(state: AppState, body: RegisterRequest) -> int:
    if state.store.query_one("SELECT 1 FROM users WHERE email = ?", (body.email,)):
        raise HTTPException(400, f"User {body.email} already exists")
    password_hash = hash_password(body.password)
    with state.store.tx() as conn:
        if conn.execute("SELECT 1 FROM users WHERE email = ?", (body.email,)).fetchone():
            raise HTTPException(400, f"User {body.email} already exists")
        cursor = conn.execute(
            "INSERT INTO users (email, password_hash, settings, created_at) VALUES (?, ?, ?, ?)",
            (
                body.email,
                password_hash,
                dumps({}),
                datetime.now(UTC).replace(tzinfo=None).isoformat(),
            ),
        )
        return int(cursor.lastrowid or 0)


def add_user(state: AppState, email: str, password: str) -> bool:
    """Create an account outside a request (the single-user server's local user); False when
    the e-mail is taken."""
    try:
        _create_user(state, RegisterRequest(email=email, password=password))
    except HTTPException:
        return False
    return True


@router.post("/register", response_model=LoginResponse, responses=BUSY)
async def register(body: RegisterRequest, state: StateDep) -> dict[str, Any]:
    if not state.settings.multi_user:
        raise HTTPException(403, REGISTRATION_CLOSED)
    user_id = await state.hash_pool.run(lambda: _create_user(state, body))
    token = _issue(state, user_id, body.email, 0)
    return {"success": True, "user": body.email, "token": token}


def _check_login(state: AppState, body: LoginRequest) -> tuple[int, int] | None:
    """(user id, token generation) when the password is right, else None."""
    row = state.store.query_one(
        "SELECT id, password_hash, token_generation FROM users WHERE email = ?", (body.username,)
    )
    if row is None:
        verify_unknown_user(body.password)  # the same time as a wrong password
        return None
    if not verify_password(body.password, str(row["password_hash"])):
        return None
    return int(row["id"]), int(row["token_generation"])


@router.post("/login", response_model=LoginResponse, responses={**THROTTLED, **BUSY})
async def login(body: LoginRequest, request: Request, state: StateDep) -> dict[str, Any]:
    client = request.client.host if request.client else "unknown"
    state.throttle.check(body.username, client)
    found = await state.hash_pool.run(lambda: _check_login(state, body))
    if found is None:
        state.throttle.failed(body.username, client)
        raise HTTPException(401, "Invalid email or password")
    state.throttle.succeeded(body.username)
    user_id, generation = found
    token = _issue(state, user_id, body.username, generation)
    return {"success": True, "user": body.username, "token": token}


@router.post("/logout")
def logout(request: Request, state: StateDep) -> dict[str, Any]:
    claims = bearer_claims(request, state)
    revoke(state, claims)
    return {"success": True, "message": "Logged out successfully"}


@router.post("/logout-all")
def logout_all(user: UserDep, state: StateDep) -> dict[str, Any]:
    """Revoke every token of this account, this one included (the generation moves on)."""
    with state.store.tx() as conn:
        conn.execute(
            "UPDATE users SET token_generation = token_generation + 1 WHERE id = ?", (user.id,)
        )
    return {"success": True, "message": "Logged out everywhere"}


@router.get("/me")
def me(user: UserDep) -> dict[str, Any]:
    return {
        "authenticated": True,
        "user": {"email": user.email, "username": user.email, "settings": user.settings},
    }
