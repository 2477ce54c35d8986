from __future__ import annotations

from tests.support import LocalServer, UserSession


def test_me_returns_the_registered_user(user: UserSession) -> None:
    answer = user.client.auth.me()
    assert answer == {
        "authenticated": True,
        "user": {"email": user.email, "username": user.email, "settings": {}},
    }


def test_health_lists_capabilities(server: LocalServer) -> None:
    import httpx

    body = httpx.get(server.url + "/health").json()
    assert body["status"] == "healthy"
    assert "idempotency-key" in body["capabilities"]
