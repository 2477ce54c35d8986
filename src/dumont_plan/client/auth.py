"""`/api/v1/auth`: register, login, logout, logout-all, me; and `/api/v1/settings`."""

from __future__ import annotations

from typing import Any

from dumont_plan.client.base import RETRY_STATUSES, Transport

# A 429 to a login is the server's throttling of failed logins: waiting and retrying cannot
# help within a command's patience (its Retry-After can be minutes), so it surfaces at once.
LOGIN_RETRY_STATUSES = RETRY_STATUSES - {429}


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
            "POST",
            "/api/v1/auth/login",
            json=body,
            idempotent=True,
            retry_statuses=LOGIN_RETRY_STATUSES,
        )
        return result

    def logout(self) -> dict[str, Any]:
        result: dict[str, Any] = self._t.request("POST", "/api/v1/auth/logout", idempotent=True)
        return result

    def logout_all(self) -> dict[str, Any]:
        """Revoke every token of this account (this client's included)."""
        result: dict[str, Any] = self._t.request("POST", "/api/v1/auth/logout-all", idempotent=True)
        return result

    def update_settings(
        self, vast_api_key: str | None = None, settings: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """`PUT /api/v1/settings` `{vast_api_key?, settings?}` (contract §2.3): the provider key
        the server uses for this account's instances and jobs."""
        body = {k: v for k, v in {"vast_api_key": vast_api_key, "settings": settings}.items() if v}
        result: dict[str, Any] = self._t.request("PUT", "/api/v1/settings", json=body)
        return result

    def me(self) -> dict[str, Any]:
        result: dict[str, Any] = self._t.request("GET", "/api/v1/auth/me")
        return result


def token_of(answer: dict[str, Any]) -> str:
    """The token of a login/register answer (`token`, or `access_token` of other servers)."""
    token = answer.get("token") or answer.get("access_token")
    return str(token) if token else ""
