"""`/api/v1/auth`: register, login, logout, me."""

from __future__ import annotations

from typing import Any

from dumont_plan.client.base import Transport


class AuthAPI:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def register(self, email: str, password: str) -> dict[str, Any]:
        body = {"email": email, "password": password}
        result: dict[str, Any] = self._t.request("POST", "/api/v1/auth/register", json=body)
        return result

    def login(self, email: str, password: str) -> dict[str, Any]:
        body = {"username": email, "password": password}
        result: dict[str, Any] = self._t.request(
            "POST", "/api/v1/auth/login", json=body, idempotent=True
        )
        return result

    def logout(self) -> dict[str, Any]:
        result: dict[str, Any] = self._t.request("POST", "/api/v1/auth/logout", idempotent=True)
        return result

    def me(self) -> dict[str, Any]:
        result: dict[str, Any] = self._t.request("GET", "/api/v1/auth/me")
        return result


def token_of(answer: dict[str, Any]) -> str:
    """The token of a login/register answer (`token`, or `access_token` of other servers)."""
    token = answer.get("token") or answer.get("access_token")
    return str(token) if token else ""
