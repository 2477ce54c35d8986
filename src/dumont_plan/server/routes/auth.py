"""`/api/v1/auth`: register, login (email or username), logout (revokes), me."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from dumont_plan.server.context import StateDep, UserDep, bearer_claims, revoke
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


class LoginRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    username: Email = Field(alias="email", description="Account e-mail (`email` or `username`).")
    password: str = Field(min_length=1)


class RegisterRequest(BaseModel):
    email: Email
    password: str = Field(min_length=6)


class LoginResponse(BaseModel):
    success: bool
    user: str
    token: str


router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/register", response_model=LoginResponse)
def register(body: RegisterRequest, state: StateDep) -> dict[str, Any]:
    with state.store.tx() as conn:
        if conn.execute("SELECT 1 FROM users WHERE email = ?", (body.email,)).fetchone():
            raise HTTPException(400, f"User {body.email} already exists")
        conn.execute(
            "INSERT INTO users (email, password_hash, settings, created_at) VALUES (?, ?, ?, ?)",
            (
                body.email,
                hash_password(body.password),
                dumps({}),
                datetime.now(UTC).replace(tzinfo=None).isoformat(),
            ),
        )
    token = issue_token(state.secret, body.email, state.settings.token_ttl_seconds)
    return {"success": True, "user": body.email, "token": token}


@router.post("/login", response_model=LoginResponse)
def login(body: LoginRequest, state: StateDep) -> dict[str, Any]:
    row = state.store.query_one("SELECT password_hash FROM users WHERE email = ?", (body.username,))
    if row is None:
        verify_unknown_user(body.password)
        raise HTTPException(401, "Invalid email or password")
    if not verify_password(body.password, str(row["password_hash"])):
        raise HTTPException(401, "Invalid email or password")
    token = issue_token(state.secret, body.username, state.settings.token_ttl_seconds)
    return {"success": True, "user": body.username, "token": token}


@router.post("/logout")
def logout(request: Request, state: StateDep) -> dict[str, Any]:
    claims = bearer_claims(request, state)
    revoke(state, claims)
    return {"success": True, "message": "Logged out successfully"}


@router.get("/me")
def me(user: UserDep) -> dict[str, Any]:
    return {
        "authenticated": True,
        "user": {"email": user.email, "username": user.email, "settings": user.settings},
    }
