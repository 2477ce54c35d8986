"""Where dumont keeps its files, and how it finds the API URL and the token.

Precedence for the API URL: `--api-url` (passed in) > `DUMONT_API_URL` > config file `api_url` >
the embedded local control plane. For the token: `DUMONT_TOKEN` > the credentials file entry for
that URL > `~/.dumont_token` (compatibility with the old CLI, remote URLs only).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dumont_plan.errors import ConfigError
from dumont_plan.files import write_atomic

APP_NAME = "dumont-plan"
LOCAL_KEY = "local"


def _xdg(var: str, fallback: str) -> Path:
    """An XDG base directory: `$var` when it is an absolute path (the spec ignores relative
    ones), else `~/fallback`. The same on every OS, on purpose: platformdirs would move macOS
    and Windows users' credentials and state, and honours relative values."""
    value = os.environ.get(var)
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / fallback


def config_dir() -> Path:
    """The XDG config dir of dumont (config.json, credentials.json)."""
    return _xdg("XDG_CONFIG_HOME", ".config") / APP_NAME


def data_dir() -> Path:
    """The XDG data dir of dumont (the embedded control plane's database and sandboxes)."""
    override = os.environ.get("DUMONT_DATA_DIR")
    if override:
        return Path(override).expanduser().absolute()
    return _xdg("XDG_DATA_HOME", ".local/share") / APP_NAME


LOGIN_AGAIN = "log in again (`dumont auth login <email> <password>`)"
RELOGIN = f"delete it and {LOGIN_AGAIN}"


def read_json_file(path: Path, what: str, fix: str = RELOGIN) -> dict[str, Any]:
    """Read a JSON object file; a corrupt one is a ConfigError naming the file and the fix."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        # Not chained: the decode error shows a byte of the file (a token's, in the credentials
        # file), and DUMONT_DEBUG prints the chain.
        raise ConfigError(f"{what} {path} is corrupt (not UTF-8 text)", fix) from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} {path} is corrupt (line {exc.lineno}: {exc.msg})", fix) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} is not a JSON object", fix)
    return data


def validate_api_url(url: str, source: str) -> str:
    """Return the URL without a trailing slash, or raise a ConfigError naming its source."""
    example = "use the server root, such as http://127.0.0.1:8766 or https://api.dumontcloud.com"
    text = url.strip()
    try:
        parts = urlsplit(text)
        hostname = parts.hostname
    except ValueError:
        parts, hostname = None, None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not hostname
        or any(c.isspace() or not c.isprintable() for c in text)
    ):
        raise ConfigError(f"{source} is not a valid API URL: {text!r}", example)
    if parts.username is not None or parts.password is not None:
        shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        raise ConfigError(
            f"{source} must not contain a user name or password ({shown})",
            "remove them from the URL and log in with `dumont auth login` or DUMONT_TOKEN",
        )
    try:
        _ = parts.port
    except ValueError as exc:
        raise ConfigError(
            f"{source} has an invalid port: {text!r}", "use a number 1-65535"
        ) from exc
    if parts.query or parts.fragment or parts.path.rstrip("/").endswith(("/api", "/api/v1")):
        raise ConfigError(f"{source} must be the server root, not an API path: {text!r}", example)
    return text.rstrip("/")


@dataclass(frozen=True)
class Endpoint:
    """Where to talk to: a URL and the key under which its token is stored."""

    url: str | None  # None = the embedded local control plane (started on demand)
    key: str


def load_config() -> dict[str, Any]:
    return read_json_file(
        config_dir() / "config.json", "config file", 'fix it: a JSON object such as {"api_url": …}'
    )


def config_retry_deadline() -> float | None:
    """Seconds one API call may spend retrying: DUMONT_RETRY_DEADLINE, else the config file's
    `retry_deadline`, else None (the client's default)."""
    for raw, source in (
        (os.environ.get("DUMONT_RETRY_DEADLINE"), "DUMONT_RETRY_DEADLINE"),
        (load_config().get("retry_deadline"), "retry_deadline in the config file"),
    ):
        if raw is None or raw == "":
            continue
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = -1.0
        if value < 0 or value != value:
            raise ConfigError(f"{source}: {raw!r} is not a number of seconds", "use e.g. 20")
        return value
    return None


def resolve_endpoint(api_url: str | None = None) -> Endpoint:
    """Pick the API URL by precedence; None means the embedded local control plane."""
    if api_url:
        url = validate_api_url(api_url, "--api-url")
        return Endpoint(url, url)
    env = os.environ.get("DUMONT_API_URL")
    if env:
        url = validate_api_url(env, "DUMONT_API_URL")
        return Endpoint(url, url)
    configured = load_config().get("api_url")
    if configured:
        url = validate_api_url(str(configured), f"api_url in {config_dir() / 'config.json'}")
        return Endpoint(url, url)
    return Endpoint(None, LOCAL_KEY)


def _credentials_path() -> Path:
    return config_dir() / "credentials.json"


def _valid_token(token: str) -> bool:
    """A bearer token is visible ASCII (a JWT is base64url and dots); anything else is damage."""
    return bool(token) and all("!" <= c <= "~" for c in token)


def load_token(endpoint: Endpoint) -> str | None:
    """The bearer token to use for an endpoint, if any."""
    env = os.environ.get("DUMONT_TOKEN")
    if env:
        if not _valid_token(env.strip()):
            raise ConfigError("DUMONT_TOKEN is not a valid token", f"unset it or {LOGIN_AGAIN}")
        return env.strip()
    path = _credentials_path()
    creds = read_json_file(path, "credentials file")
    entry = creds.get(endpoint.key)
    if isinstance(entry, dict) and isinstance(entry.get("token"), str):
        token = str(entry["token"]).strip()
        if not _valid_token(token):
            raise ConfigError(
                f"credentials file {path} has a corrupt token for {endpoint.key}",
                RELOGIN,
            )
        return token
    if endpoint.url is not None:
        legacy = Path.home() / ".dumont_token"
        if legacy.is_file():
            try:
                token = legacy.read_bytes().decode("ascii").strip()
            except OSError as exc:
                raise ConfigError(f"cannot read token file {legacy}: {exc.strerror}") from exc
            except UnicodeDecodeError:
                token = "\ufffd"
            if not token:
                return None  # an empty file (the old CLI's logout) holds no token
            if not _valid_token(token):
                raise ConfigError(f"token file {legacy} is corrupt", RELOGIN)
            return token
    return None


def save_token(endpoint: Endpoint, token: str, user: str) -> None:
    path = _credentials_path()
    creds = read_json_file(path, "credentials file")
    creds[endpoint.key] = {"token": token, "user": user}
    write_atomic(path, json.dumps(creds, indent=2) + "\n")


def forget_token(endpoint: Endpoint) -> None:
    path = _credentials_path()
    creds = read_json_file(path, "credentials file")
    if creds.pop(endpoint.key, None) is not None:
        write_atomic(path, json.dumps(creds, indent=2) + "\n")
