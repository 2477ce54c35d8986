"""Auth end to end over loopback (contract §2): register, login, me, logout, and every refusal."""

from __future__ import annotations

import base64
import json
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient

from dumont_plan.server.app import create_app
from dumont_plan.server.security import load_or_create_secret
from dumont_plan.server.settings import ServerSettings
from tests.support import PASSWORD, LocalServer, UserSession, assert_invisible_to

NOT_AUTHENTICATED = {"error": "Not authenticated"}


def fresh_email() -> str:
    return f"auth-{uuid.uuid4().hex[:10]}@example.com"


@pytest.fixture
def api(server: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_not_authenticated(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.json() == NOT_AUTHENTICATED
    assert response.headers["WWW-Authenticate"] == "Bearer"


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def test_register_login_me_logout(api: httpx.Client) -> None:
    email = fresh_email()

    registered = api.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert registered.status_code == 200
    assert registered.json() == {
        "success": True,
        "user": email,
        "token": registered.json()["token"],
    }

    by_email = api.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    by_username = api.post("/api/v1/auth/login", json={"username": email, "password": PASSWORD})
    for answer in (by_email, by_username):
        assert answer.status_code == 200
        assert answer.json() == {"success": True, "user": email, "token": answer.json()["token"]}
    token = by_email.json()["token"]
    assert claims_of(token)["sub"] == email

    me = api.get("/api/v1/auth/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.json() == {
        "authenticated": True,
        "user": {"email": email, "username": email, "settings": {}},
    }

    logout = api.post("/api/v1/auth/logout", headers=bearer(token))
    assert logout.status_code == 200
    assert logout.json() == {"success": True, "message": "Logged out successfully"}

    # The revoked token is refused everywhere, including a second logout ...
    assert_not_authenticated(api.get("/api/v1/auth/me", headers=bearer(token)))
    assert_not_authenticated(api.post("/api/v1/auth/logout", headers=bearer(token)))
    # ... while the user's other tokens stay valid.
    other = by_username.json()["token"]
    assert api.get("/api/v1/auth/me", headers=bearer(other)).status_code == 200


def test_login_is_case_insensitive_on_the_email(api: httpx.Client) -> None:
    email = fresh_email()
    api.post("/api/v1/auth/register", json={"email": email.upper(), "password": PASSWORD})
    answer = api.post("/api/v1/auth/login", json={"email": email.title(), "password": PASSWORD})
    assert answer.status_code == 200
    assert answer.json()["user"] == email


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer a.b.c"},
    ],
    ids=["none", "empty-bearer", "garbage", "basic", "three-garbage-parts"],
)
def test_missing_or_malformed_token_is_401(api: httpx.Client, headers: dict[str, str]) -> None:
    assert_not_authenticated(api.get("/api/v1/auth/me", headers=headers))


def test_token_signed_with_another_secret_is_401(api: httpx.Client, user: UserSession) -> None:
    claims = claims_of(user.token)
    forged = jwt.encode(claims, "not-the-server-secret-" + "x" * 32, algorithm="HS256")
    assert_not_authenticated(api.get("/api/v1/auth/me", headers=bearer(forged)))


def test_token_of_a_user_that_does_not_exist_is_401(api: httpx.Client, server: LocalServer) -> None:
    secret = (server.data_dir / "jwt-secret").read_text().strip()
    now = int(time.time())
    claims = {
        "sub": fresh_email(),
        "uid": 10**9,
        "gen": 0,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    token = jwt.encode(claims, secret, algorithm="HS256")
    assert_not_authenticated(api.get("/api/v1/auth/me", headers=bearer(token)))


@pytest.mark.slow
def test_expired_token_is_401(tmp_path: Path) -> None:
    # A real token issued by a server whose tokens live 3 s: at least 2 s for the first check
    # (exp counts from the whole second; a shorter life could end before it on a loaded machine).
    srv = LocalServer(tmp_path / "short-ttl", env={"DUMONT_SERVER_TOKEN_TTL": "3"}).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            answer = http.post(
                "/api/v1/auth/register", json={"email": fresh_email(), "password": PASSWORD}
            ).json()
            token = answer["token"]
            claims = claims_of(token)
            assert claims["exp"] - claims["iat"] == 3
            assert http.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200
            # PyJWT refuses a token once its whole-second clock reaches `exp`.
            time.sleep(max(0.0, claims["exp"] - time.time()) + 0.1)
            assert_not_authenticated(http.get("/api/v1/auth/me", headers=bearer(token)))
    finally:
        srv.stop()


def test_wrong_password_is_401(api: httpx.Client, user: UserSession) -> None:
    for body in (
        {"email": user.email, "password": PASSWORD + "x"},
        {"username": fresh_email(), "password": PASSWORD},  # unknown account: same answer
    ):
        answer = api.post("/api/v1/auth/login", json=body)
        assert answer.status_code == 401
        assert answer.json() == {"error": "Invalid email or password"}


def assert_validation_error(response: httpx.Response, field: str, error_type: str) -> None:
    assert response.status_code == 422
    body = response.json()
    assert set(body) == {"error", "details"}
    assert body["error"] == "Validation error"
    assert isinstance(body["details"], list) and body["details"]
    for item in body["details"]:
        assert {"type", "loc", "msg"} <= set(item)
    assert [(d["loc"], d["type"]) for d in body["details"]] == [(["body", field], error_type)]


def test_short_password_is_422_and_never_echoed(api: httpx.Client) -> None:
    password = "abc1234"  # 7 characters; at least 8 are needed
    answer = api.post("/api/v1/auth/register", json={"email": fresh_email(), "password": password})
    assert_validation_error(answer, "password", "string_too_short")
    assert answer.json()["details"][0]["ctx"] == {"min_length": 8}
    assert password not in answer.text


@pytest.mark.parametrize("path", ["/api/v1/auth/register", "/api/v1/auth/login"])
@pytest.mark.parametrize("email", ["not-an-email", "a@b", "two@@example.com", ""])
def test_non_email_is_422(api: httpx.Client, path: str, email: str) -> None:
    key = "email" if path.endswith("register") else "username"
    answer = api.post(path, json={key: email, "password": "s3cret-Pa55word"})
    assert_validation_error(answer, key, "value_error")  # the key the caller sent
    assert "s3cret-Pa55word" not in answer.text


def test_missing_fields_do_not_echo_the_password(api: httpx.Client) -> None:
    answer = api.post("/api/v1/auth/login", json={"password": "s3cret-Pa55word"})
    assert answer.status_code == 422
    assert [d["loc"] for d in answer.json()["details"]] == [["body", "email"]]
    assert "s3cret-Pa55word" not in answer.text


def test_duplicate_register_is_400(api: httpx.Client, user: UserSession) -> None:
    for email in (user.email, user.email.upper()):
        answer = api.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
        assert answer.status_code == 400
        assert answer.json() == {"error": f"User {user.email} already exists"}


def test_passwords_are_not_stored_in_clear(api: httpx.Client, server: LocalServer) -> None:
    email, password = fresh_email(), f"clear-text-{uuid.uuid4().hex}"
    assert api.post("/api/v1/auth/register", json={"email": email, "password": password}).is_success
    assert api.post("/api/v1/auth/login", json={"email": email, "password": password}).is_success
    files = [p for p in server.data_dir.iterdir() if p.is_file()]
    db_files = [p for p in files if p.name.startswith("dumont.sqlite3")]
    assert db_files, files
    stored = b"".join(p.read_bytes() for p in db_files)
    assert email.encode() in stored  # the right files: the account is in them ...
    for path in files:  # ... and its password is in no file of the data dir (db, WAL, log)
        assert password.encode() not in path.read_bytes(), path.name


def test_jwt_secret_is_private_and_per_install(server: LocalServer, tmp_path: Path) -> None:
    first = server.data_dir / "jwt-secret"
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    other_dir = tmp_path / "other-install"
    create_app(ServerSettings(data_dir=other_dir), background=False)
    second = other_dir / "jwt-secret"
    assert stat.S_IMODE(second.stat().st_mode) == 0o600
    assert len(first.read_text().strip()) >= 32
    assert first.read_text() != second.read_text()
    # The secret is made once: a restart of the same install keeps it.
    before = second.read_text()
    create_app(ServerSettings(data_dir=other_dir), background=False)
    assert second.read_text() == before


def test_token_of_one_install_is_refused_by_another(user: UserSession, tmp_path: Path) -> None:
    app = create_app(ServerSettings(data_dir=tmp_path / "other"), background=False)
    with TestClient(app) as other:
        assert_not_authenticated(other.get("/api/v1/auth/me", headers=bearer(user.token)))


def test_no_demo_backdoor(api: httpx.Client) -> None:
    assert_not_authenticated(api.get("/api/v1/auth/me", params={"demo": "true"}))


def test_user_b_sees_only_itself(make_user: Any) -> None:
    a, b = make_user(), make_user()
    assert a.client.auth.me()["user"]["email"] == a.email
    me_b = b.client.auth.me()
    assert me_b["user"]["email"] == b.email
    assert a.email not in json.dumps(me_b)


def test_logout_of_b_does_not_touch_a(make_user: Any) -> None:
    a, b = make_user(), make_user()
    b.client.auth.logout()
    assert a.client.auth.me()["user"]["email"] == a.email


def test_assert_invisible_to_catches_a_leak(user: UserSession) -> None:
    """The isolation helper later features use fails when the other user can read the path."""
    with pytest.raises(AssertionError):
        assert_invisible_to(user, [("GET", "/api/v1/auth/me")])


def test_b_cannot_read_a_job(server: LocalServer, make_user: Any) -> None:
    """Anything filed under A is invisible to B (the first per-user resource: jobs)."""
    a, b = make_user(), make_user()
    with a.http() as http:
        created = http.post("/api/v1/jobs/", json={"name": "iso", "command": "true"})
    assert created.status_code in (200, 201), created.text
    job_id = created.json()["id"]
    assert_invisible_to(b, [("GET", f"/api/v1/jobs/{job_id}")])
    with b.http() as http:
        listed = http.get("/api/v1/jobs/")
    assert listed.status_code == 200
    assert job_id not in listed.text


def test_concurrent_first_starts_agree_on_one_secret(tmp_path: Path) -> None:
    barrier = threading.Barrier(6)
    secrets: list[str] = []

    def start() -> None:
        barrier.wait()
        secrets.append(load_or_create_secret(tmp_path))

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(secrets) == 6
    assert len(set(secrets)) == 1
    assert len(secrets[0]) >= 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jwt-secret"]  # no temp files left
