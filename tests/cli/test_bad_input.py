"""Bad configuration gets one `Error: …` line on stderr and exit 1, never a traceback."""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import typer

from dumont_plan.cli import app as cli_app
from dumont_plan.errors import PlanError
from tests.support import LocalServer, UserSession, cli_env, run_cli


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def assert_nothing_started(home: Path) -> None:
    assert not (home / ".local" / "share" / "dumont-plan" / "server.json").exists()


ROOT_HINT = "use the server root, such as http://127.0.0.1:8766 or https://api.dumontcloud.com"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "DUMONT_API_URL is not a valid API URL: 'not a url'; " + ROOT_HINT),
        ("localhost:8766", "DUMONT_API_URL is not a valid API URL: 'localhost:8766'; " + ROOT_HINT),
        (
            "ftp://example.com",
            "DUMONT_API_URL is not a valid API URL: 'ftp://example.com'; " + ROOT_HINT,
        ),
        ("http://", "DUMONT_API_URL is not a valid API URL: 'http://'; " + ROOT_HINT),
        ("http://[::1", "DUMONT_API_URL is not a valid API URL: 'http://[::1'; " + ROOT_HINT),
        (
            "http://exa mple.com",
            "DUMONT_API_URL is not a valid API URL: 'http://exa mple.com'; " + ROOT_HINT,
        ),
        (
            "http://127.0.0.1:99999",
            "DUMONT_API_URL has an invalid port: 'http://127.0.0.1:99999'; use a number 1-65535",
        ),
        (
            "http://127.0.0.1:8766/api/v1",
            "DUMONT_API_URL must be the server root, not an API path: "
            "'http://127.0.0.1:8766/api/v1'; " + ROOT_HINT,
        ),
    ],
)
def test_malformed_api_url(home: Path, url: str, message: str) -> None:
    result = run_cli(["auth", "me"], cli_env(home, url, "some.token.value"))
    assert error_line(result) == f"Error: {message}"
    assert_nothing_started(home)


def test_api_url_with_a_password_never_shows_it(home: Path) -> None:
    result = run_cli(["auth", "me"], cli_env(home, "http://me:hunter2@127.0.0.1:1"))
    assert error_line(result) == (
        "Error: DUMONT_API_URL must not contain a user name or password (http://127.0.0.1:1); "
        "remove them from the URL and log in with `dumont auth login` or DUMONT_TOKEN"
    )


def test_malformed_api_url_option_and_config_file(home: Path) -> None:
    flag = run_cli(["--api-url", "nope", "auth", "me"], cli_env(home))
    assert error_line(flag).startswith("Error: --api-url is not a valid API URL: 'nope'")
    config = home / ".config" / "dumont-plan" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"api_url": "nope"}))
    from_file = run_cli(["auth", "me"], cli_env(home))
    assert error_line(from_file).startswith(f"Error: api_url in {config} is not a valid API URL")
    config.write_text("{not json")
    corrupt = run_cli(["auth", "me"], cli_env(home))
    assert error_line(corrupt).startswith(f"Error: config file {config} is corrupt (line 1:")
    assert_nothing_started(home)


def test_unreachable_server(home: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_cli(["auth", "me"], cli_env(home, f"http://127.0.0.1:{port}", "some.token"))
    assert error_line(result) == (
        f"Error: cannot reach the Dumont API at http://127.0.0.1:{port} (connection refused: "
        "nothing listens there); check DUMONT_API_URL (unset it to use the local control plane "
        "dumont starts by itself)"
    )


class HtmlOnly(http.server.BaseHTTPRequestHandler):
    """A web server that is not a Dumont API: every answer is an HTML page."""

    def do_GET(self) -> None:
        status = 200 if self.path == "/" else 404
        body = b"<!DOCTYPE html><html><body><h1>Not here</h1></body></html>"
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("path", ["/", "/elsewhere"])
def test_a_server_that_is_not_dumont_is_recognised(home: Path, path: str) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HtmlOnly)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = run_cli(["job", "list"], cli_env(home, url + path.rstrip("/"), "some.token"))
    finally:
        server.shutdown()
        server.server_close()
    line = error_line(result)
    assert line.startswith(f"Error: the server at {url} is not a Dumont API: it answered GET ")
    assert "with an HTML page (HTTP 404); check DUMONT_API_URL: the root of a Dumont API" in line
    assert "<h1>" not in result.stderr


RELOGIN = "delete it and log in again (`dumont auth login <email> <password>`)"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"garbage{", "is corrupt (line 1: Expecting value)"),
        (b"\xff\xfe\x00garbage", "is corrupt (not UTF-8 text)"),
        (b"[1, 2]", "is not a JSON object"),
        (b'{"KEY": {"token": "t\\u00e9"}}', "has a corrupt token for KEY"),
    ],
    ids=["not-json", "not-utf8", "not-an-object", "non-ascii-token"],
)
@pytest.mark.parametrize("with_url", [False, True], ids=["embedded", "url"])
def test_corrupt_credentials_file(
    home: Path, server: LocalServer, content: bytes, problem: str, with_url: bool
) -> None:
    key = server.url if with_url else "local"
    path = home / ".config" / "dumont-plan" / "credentials.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(content.replace(b"KEY", key.encode()))
    env = cli_env(home, server.url if with_url else None)
    line = error_line(run_cli(["auth", "me"], env))
    assert line == f"Error: credentials file {path} {problem.replace('KEY', key)}; {RELOGIN}"
    assert_nothing_started(home)  # the embedded server is not started for a doomed command


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe\xfa\xfb", b"abc\x00def", b"two words", "tok\u00e9n".encode()],
    ids=["invalid-utf8", "nul", "space", "non-ascii"],
)
def test_corrupt_legacy_token_file(home: Path, server: LocalServer, content: bytes) -> None:
    (home / ".dumont_token").write_bytes(content)
    result = run_cli(["auth", "me"], cli_env(home, server.url))
    assert error_line(result) == f"Error: token file {home / '.dumont_token'} is corrupt; {RELOGIN}"


def test_legacy_token_file_is_used(home: Path, server: LocalServer, user: UserSession) -> None:
    (home / ".dumont_token").write_text(user.token + "\n")
    result = run_cli(["auth", "me", "-o", "json"], cli_env(home, server.url))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["user"]["email"] == user.email


def test_bad_dumont_token_variable(home: Path, server: LocalServer) -> None:
    result = run_cli(["auth", "me"], cli_env(home, server.url, "tok\u00e9n"))
    assert error_line(result) == (
        "Error: DUMONT_TOKEN is not a valid token; "
        "unset it or log in again (`dumont auth login <email> <password>`)"
    )


@pytest.fixture
def boundary(monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    """The real error boundary (`run`) around a throwaway command group."""
    app = typer.Typer()

    @app.command()
    def fail(kind: str) -> None:
        if kind == "dumont":
            raise PlanError("dumont.yaml: something is wrong", "fix it like this")
        if kind == "exit":
            raise typer.Exit(4)
        if kind == "bug":
            raise KeyError("a bug")

    @app.command()
    def ok() -> None:
        pass

    monkeypatch.setattr(cli_app, "app", app)
    return app


def test_boundary_prints_one_line_for_a_dumont_error(
    boundary: typer.Typer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_app.run(["fail", "dumont"]) == 1
    captured = capsys.readouterr()
    assert captured.err == "Error: dumont.yaml: something is wrong; fix it like this\n"
    assert captured.out == ""


def test_boundary_keeps_exit_codes(boundary: typer.Typer) -> None:
    assert cli_app.run(["fail", "exit"]) == 4
    assert cli_app.run(["ok"]) == 0


def test_boundary_lets_bugs_through(boundary: typer.Typer) -> None:
    with pytest.raises(KeyError):
        cli_app.run(["fail", "bug"])
