"""`dumont auth register|login|me|logout` against the session server, and `dumont --version`."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from dumont_plan import __version__
from tests.support import PASSWORD, LocalServer, UserSession, cli_env, run_cli


def credentials(home: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (home / ".config" / "dumont-plan" / "credentials.json").read_text()
    )
    return data


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one `Error: …` line of a failed command (and nothing else on stderr)."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def me_status(url: str, token: str) -> int:
    return httpx.get(
        url + "/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}
    ).status_code


@pytest.mark.slow
def test_register_me_logout_login_round_trip(server: LocalServer, home: Path) -> None:
    env = cli_env(home, server.url)  # a URL, no token: the CLI logs in itself
    email = f"cli-{uuid.uuid4().hex[:10]}@example.com"

    registered = run_cli(["auth", "register", email, PASSWORD], env)
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout == f"Registered and logged in as {email}.\n"
    path = home / ".config" / "dumont-plan" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entry = credentials(home)[server.url]
    assert entry["user"] == email
    first_token = entry["token"]
    assert me_status(server.url, first_token) == 200

    me = run_cli(["auth", "me", "--output", "json"], env)
    assert me.returncode == 0, me.stderr
    assert json.loads(me.stdout) == {
        "authenticated": True,
        "user": {"email": email, "username": email, "settings": {}},
    }
    table = run_cli(["auth", "me"], env)
    assert table.stdout.split() == ["email", email, "authenticated", "True"]

    logged_out = run_cli(["auth", "logout"], env)
    assert logged_out.returncode == 0, logged_out.stderr
    assert logged_out.stdout == "Logged out.\n"
    assert server.url not in credentials(home)
    assert me_status(server.url, first_token) == 401  # revoked on the server, not just forgotten

    refused = run_cli(["auth", "me"], env)
    assert error_line(refused) == (
        "Error: GET /api/v1/auth/me failed (401): Not authenticated; "
        "log in again (`dumont auth login <email> <password>`)"
    )

    logged_in = run_cli(["auth", "login", email, PASSWORD], env)
    assert logged_in.returncode == 0, logged_in.stderr
    assert logged_in.stdout == f"Logged in as {email}.\n"
    second_token = credentials(home)[server.url]["token"]
    assert second_token != first_token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert run_cli(["auth", "me"], env).returncode == 0


def test_wrong_password_is_one_clear_line(
    server: LocalServer, home: Path, user: UserSession
) -> None:
    result = run_cli(["auth", "login", user.email, "wrong-password"], cli_env(home, server.url))
    assert error_line(result) == (
        "Error: POST /api/v1/auth/login failed (401): Invalid email or password; "
        "check the e-mail and password, or create an account with `dumont auth register`"
    )
    assert "wrong-password" not in result.stdout + result.stderr
    assert not (home / ".config" / "dumont-plan" / "credentials.json").exists()


def test_register_refusals_are_one_clear_line(server: LocalServer, home: Path) -> None:
    env = cli_env(home, server.url)
    short = run_cli(["auth", "register", f"s-{uuid.uuid4().hex[:8]}@example.com", "pw-x1"], env)
    assert error_line(short) == (
        "Error: POST /api/v1/auth/register failed (422): Validation error: "
        "password: String should have at least 8 characters"
    )
    assert "pw-x1" not in short.stderr
    bad_email = run_cli(["auth", "register", "nobody", PASSWORD], env)
    assert "email: Value error, value is not a valid email address" in error_line(bad_email)


def test_duplicate_register_is_one_clear_line(
    server: LocalServer, home: Path, user: UserSession
) -> None:
    result = run_cli(["auth", "register", user.email, PASSWORD], cli_env(home, server.url))
    assert error_line(result) == (
        f"Error: POST /api/v1/auth/register failed (400): User {user.email} already exists"
    )


def test_dumont_token_is_used_as_is(cli: Any, user: UserSession) -> None:
    result = cli("auth", "me", "--output", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["user"]["email"] == user.email


def test_version(home: Path) -> None:
    result = run_cli(["--version"], cli_env(home))
    assert result.returncode == 0
    assert result.stdout == f"dumont {__version__}\n"
    assert result.stderr == ""


def test_version_imports_no_heavy_library(home: Path) -> None:
    code = (
        "import sys; from dumont_plan.cli.main import main; main(['--version']); "
        "print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in {'typer', 'httpx', 'pydantic', 'rich'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=cli_env(home), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"dumont {__version__}\n[]\n"


def test_user_data_is_printed_verbatim(server: LocalServer, home: Path) -> None:
    """Names are data: never rich markup (a stray `[/x]` crashed) nor emoji codes."""
    email = f"[/x]:fire:{uuid.uuid4().hex[:6]}@example.com"
    env = cli_env(home, server.url)
    registered = run_cli(["auth", "register", email, PASSWORD], env)
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout == f"Registered and logged in as {email}.\n"
    me = run_cli(["auth", "me"], env)
    assert me.stdout.split() == ["email", email, "authenticated", "True"]
