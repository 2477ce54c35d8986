"""A client of Terraform's HTTP state backend protocol (what `backend: http` speaks).

    store = HttpStateStore(HttpStateSettings(address="https://gitlab.example.com/api/v4/"
                                             "projects/42/terraform/state/prod",
                                             lock_method="POST", unlock_method="DELETE",
                                             lock_address=".../prod/lock", unlock_address=...,
                                             username="ana", password=token))
    text = store.get()                     # None: no state stored (404, or an empty body)
    holder = store.lock(info)              # None: locked; else the holder's lock info (423/409)
    store.put(text, lock_id=info["ID"])    # POST (update_method) ADDRESS?ID=<lock id>
    store.unlock(info)                     # None, or the holder's lock info (409/423)

The protocol (Terraform's documentation): the state is read with GET (404: none), written with
POST, and locked with LOCK/UNLOCK (methods and addresses configurable) carrying the lock info
as the body; a lock held by someone else answers 423 Locked or 409 Conflict with the holder's
lock info; the lock's ID is added to every update as the query parameter `ID`. Authentication
is HTTP basic (username + password, e.g. a GitLab user and access token) or a bearer token.

Connect errors, 429 and 5xx are retried `retry_max` times with an exponential backoff between
`retry_wait_min` and `retry_wait_max` seconds (a Retry-After is honoured up to that maximum).
A write retried after a lost answer is harmless: the local control plane answers 200 to the
very same document again. Credentials never appear in a message: addresses are shown without
their user information or query.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from dumont_plan import __version__
from dumont_plan.client.base import parse_retry_after
from dumont_plan.errors import BackendError, LockError, StateConflictError

USER_AGENT = f"dumont-plan/{__version__}"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
LOCKED_STATUSES = frozenset({409, 423})
HTTP_TIMEOUT = 60.0


@dataclass(frozen=True)
class HttpStateSettings:
    """Where and how to reach the state (`backend:` keys of the spec, resolved)."""

    address: str
    lock_address: str | None = None  # default: address
    unlock_address: str | None = None  # default: lock_address
    lock_method: str = "LOCK"
    unlock_method: str = "UNLOCK"
    update_method: str = "POST"
    username: str | None = None
    password: str | None = None
    token: str | None = None  # a bearer token (when no username)
    retry_max: int = 2
    retry_wait_min: float = 1.0
    retry_wait_max: float = 30.0


def shown(url: str) -> str:
    """`url` without user information or query (which may hold credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class HttpStateStore:
    """The state behind one address, over Terraform's HTTP backend protocol."""

    def __init__(
        self,
        settings: HttpStateSettings,
        *,
        http: httpx.Client | None = None,
        own_http: bool | None = None,
        reauthenticate: Callable[[], str | None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.http = http or httpx.Client(timeout=HTTP_TIMEOUT)
        self._owns_http = http is None if own_http is None else own_http
        self.reauthenticate = reauthenticate
        self.sleep = sleep
        self.token = settings.token

    @property
    def address(self) -> str:
        return shown(self.settings.address)

    @property
    def lock_url(self) -> str:
        return self.settings.lock_address or self.settings.address

    @property
    def unlock_url(self) -> str:
        return self.settings.unlock_address or self.lock_url

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    # -- the protocol ----------------------------------------------------------------------

    def get(self) -> str | None:
        """The stored document's text; None when there is none (404, 204 or an empty body)."""
        response = self._send("GET", self.settings.address, what="read the state")
        if response.status_code in (404, 204):
            return None
        self._check(response, "read the state")
        return response.text if response.text.strip() else None

    def put(self, text: str, lock_id: str | None) -> None:
        """Store `text` (while holding the lock `lock_id`)."""
        params = {"ID": lock_id} if lock_id else None
        response = self._send(
            self.settings.update_method,
            self.settings.address,
            what="write the state",
            content=text.encode("utf-8"),
            params=params,
        )
        if response.status_code in LOCKED_STATUSES:
            body = _json(response)
            if isinstance(body, dict) and "ID" in body:
                raise LockError(
                    f"the state at {self.address} refused the write: it is locked by "
                    f"{body.get('Who') or 'someone'} (lock ID {body.get('ID')}), not by this run",
                    "someone force-unlocked this run's lock: run the command again",
                )
            raise StateConflictError(
                f"the state at {self.address} refused the write: {_message(body, response)}",
                "another run wrote the state since this one read it: run the command again "
                "(it plans from the state as it is now); nothing was merged",
            )
        self._check(response, "write the state")

    def lock(self, info: dict[str, Any]) -> dict[str, Any] | None:
        """Take the lock; None when taken, else the holder's lock info (423/409)."""
        response = self._send(
            self.settings.lock_method, self.lock_url, what="lock the state", json_body=info
        )
        if response.status_code in LOCKED_STATUSES:
            body = _json(response)
            return body if isinstance(body, dict) else {}
        self._check(response, "lock the state")
        return None

    def unlock(self, info: dict[str, Any]) -> dict[str, Any] | None:
        """Release the lock `info["ID"]`; None when released (or not held), else the holder."""
        response = self._send(
            self.settings.unlock_method,
            self.unlock_url,
            what="unlock the state",
            json_body=info,
            params={"ID": str(info.get("ID", ""))},
        )
        if response.status_code in LOCKED_STATUSES:
            body = _json(response)
            return body if isinstance(body, dict) else {}
        if response.status_code == 404:
            return None  # nothing stored, nothing locked
        self._check(response, "unlock the state")
        return None

    # -- sending ---------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.settings.username is not None:
            pair = f"{self.settings.username}:{self.settings.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        elif self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _send(
        self,
        method: str,
        url: str,
        *,
        what: str,
        content: bytes | None = None,
        json_body: Any = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        attempt = 0
        reauthed = False
        while True:
            headers = self._headers()
            if json_body is not None:
                content = json.dumps(json_body).encode()
            if content is not None:
                headers["Content-Type"] = "application/json"
            try:
                response = self.http.request(
                    method,
                    url,
                    content=content,
                    params=params,
                    headers=headers,
                )
            except httpx.TransportError as exc:
                if attempt < self.settings.retry_max:
                    self.sleep(self._delay(attempt, None))
                    attempt += 1
                    continue
                raise BackendError(
                    f"cannot {what}: the state backend at {shown(url)} did not answer "
                    f"({type(exc).__name__}, after {attempt + 1} attempts)",
                    "check the backend's address and that it is up; then run the command again",
                ) from exc
            status = response.status_code
            if status in RETRY_STATUSES and attempt < self.settings.retry_max:
                self.sleep(
                    self._delay(attempt, parse_retry_after(response.headers.get("Retry-After")))
                )
                attempt += 1
                continue
            if status == 401 and self.reauthenticate is not None and not reauthed:
                reauthed = True
                fresh = self.reauthenticate()
                if fresh:
                    self.token = fresh
                    continue
            return response

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        low, high = self.settings.retry_wait_min, self.settings.retry_wait_max
        if retry_after is not None:
            return min(max(retry_after, low), high)
        return float(min(high, low * (2**attempt)))

    def _check(self, response: httpx.Response, what: str) -> None:
        status = response.status_code
        if status < 300:
            return
        body = _json(response)
        if status in (401, 403):
            raise BackendError(
                f"cannot {what}: the state backend at {self.address} refused the credentials "
                f"({status})",
                "pass them with --backend-config username=... / password=... / token=..., or "
                "DUMONT_BACKEND_USERNAME / DUMONT_BACKEND_PASSWORD / DUMONT_BACKEND_TOKEN",
            )
        raise BackendError(
            f"cannot {what}: the state backend at {self.address} answered {status}: "
            f"{_message(body, response)}",
            "check the `backend:` block (address, lock_address, methods) against the server",
        )


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _message(body: Any, response: httpx.Response) -> str:
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            if isinstance(body.get(key), str) and body[key]:
                return str(body[key])
    text = response.text.strip()
    return text[:300] if text else f"HTTP {response.status_code}"
