"""The one choke point for API traffic: auth header, user agent, error mapping, retries."""

from __future__ import annotations

import email.utils
import json as jsonlib
import os
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from dumont_plan import __version__
from dumont_plan.errors import ApiError, ConnectError, error_for_status

if TYPE_CHECKING:
    import ssl

    import httpx

USER_AGENT = f"dumont-plan/{__version__}"
# Environment variables that send HTTP through a proxy (httpx honours them).
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Seconds one call may spend retrying, whatever the attempts left (DUMONT_RETRY_DEADLINE): a
# provider that stays unreachable fails the command in that time, not attempts x its timeout.
DEFAULT_RETRY_DEADLINE = 20.0
KEY_MISSING = "api key not configured"  # the real server's words for a missing provider key
SET_KEY_HINT = (
    "set your provider key on the server: `dumont auth settings --vast-key KEY` "
    "(PUT /api/v1/settings)"
)
SERVER_KEY_HINT = (
    "the server itself has no provider key: its operator sets VAST_API_KEY in its environment"
)


def retry_deadline() -> float:
    """DUMONT_RETRY_DEADLINE (seconds) when set and valid, else the default."""
    raw = os.environ.get("DUMONT_RETRY_DEADLINE", "")
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_RETRY_DEADLINE
    return value if value >= 0 else DEFAULT_RETRY_DEADLINE


def is_permanent(status: int, body: Any) -> bool:
    """An error answer a retry cannot fix although its status says "try again" (a 503 whose
    body says the provider key is missing: only setting the key changes that)."""
    return KEY_MISSING in error_message(body, "").lower()


def key_hint(status: int, body: Any) -> str | None:
    """How to fix a missing provider key, when the answer says that."""
    text = error_message(body, "").lower()
    if KEY_MISSING not in text:
        return None
    return SERVER_KEY_HINT if "on server" in text else SET_KEY_HINT


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def tls_for(url: str) -> ssl.SSLContext | bool:
    """httpx's default TLS (the CA bundle) for https, or when a proxy may carry the traffic.

    A plain-http endpoint (the local control plane) never makes a TLS handshake: loading the CA
    bundle would cost ~20 ms of CPU per command for nothing. It gets a context with no CA, so
    a handshake it should never make would fail verification rather than go unchecked.
    """
    import ssl

    proxied = any(os.environ.get(v) or os.environ.get(v.lower()) for v in PROXY_VARS)
    if proxied or not url.lower().startswith("http://"):
        return True
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def connect_reason(exc: httpx.ConnectError) -> str:
    """Why a connection failed, in words: `connection refused`, `unknown host`, ..."""
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused: nothing listens there"
    if "name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    return type(exc).__name__


def is_html(response: httpx.Response) -> bool:
    kind = response.headers.get("content-type", "").lower()
    return "text/html" in kind or response.text.lstrip()[:15].lower().startswith(
        ("<!doctype html", "<html")
    )


def error_message(body: Any, fallback: str) -> str:
    """The human message of an error body: `error`, then `detail`, then `details`."""
    if isinstance(body, dict):
        error, details = body.get("error"), body.get("details")
        if error == "Internal server error" and isinstance(details, str) and details:
            return f"{error}: {details}"  # the real platform's reason for a 500
        for key in ("error", "detail", "details", "message"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if value:
                return str(value)
    if isinstance(body, str) and body.strip():
        return body.strip()[:300]
    return fallback


def with_field_problems(body: Any, message: str) -> str:
    """`message`, then a 422's first field problems (`field: what is wrong; ...`)."""
    if not isinstance(body, dict) or not isinstance(body.get("details"), list):
        return message
    parts = []
    for item in body["details"][:5]:
        if isinstance(item, dict):
            loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
            parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg")))
    return f"{message}: " + "; ".join(parts) if parts else message


class RetryPolicy:
    """Jittered exponential backoff with a cap, honouring Retry-After."""

    def __init__(
        self,
        attempts: int = 4,
        base: float = 0.25,
        cap: float = 30.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.attempts = attempts
        self.base = base
        self.cap = cap
        self.rng = rng

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return float(min(retry_after, self.cap))
        backoff = float(min(self.cap, self.base * (2**attempt)))
        return backoff / 2 + float(self.rng()) * backoff / 2


def _decoded(body: bytes) -> Any:
    """A preloaded 200 body as `request` decodes a sent one's (a JSON content type): its
    JSON, None when empty, else its text (the caller then reports what it is not)."""
    if not body:
        return None
    try:
        return jsonlib.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


class Answer(Protocol):
    """An HTTP answer read before it was asked for (cli/early.py's `Answer`)."""

    @property
    def status(self) -> int:
        """The HTTP status; 0: the request went out and was not answered in time."""
        ...

    @property
    def headers(self) -> list[tuple[str, str]]: ...

    @property
    def body(self) -> bytes: ...

    @property
    def is_json_ok(self) -> bool:
        """A 200 with a JSON content type: decoded without loading httpx."""
        ...


class Preloaded(Protocol):
    """`(path, params, token) -> answer`: the answer to that GET, read before it was asked
    for (cli/early.py), handed out once; None: send the request."""

    def __call__(self, path: str, params: dict[str, Any], token: str | None) -> Answer | None: ...


class Transport:
    """Sends requests for the resource groups; owns auth, retries and error mapping."""

    def __init__(
        self,
        http: httpx.Client | Callable[[], httpx.Client],
        token: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        reauthenticate: Callable[[], str | None] | None = None,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # A factory is called on the first request that goes out: a command whose reads were
        # all answered early never loads httpx (~22 ms of CPU).
        self._http: httpx.Client | None = None if callable(http) else http
        self._make_http: Callable[[], httpx.Client] = http if callable(http) else lambda: http
        self.deadline = retry_deadline() if deadline is None else deadline
        self.clock = clock
        self.token = token
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.reauthenticate = reauthenticate
        self.request_count = 0
        # Requests sent that may change something (not GET/HEAD/OPTIONS), by every thread: a
        # failed create during which this did not move surely created nothing.
        self.change_requests = 0
        # Pages of one list are read from several threads: the count and a re-login are shared.
        self._count_lock = threading.Lock()
        self._login_lock = threading.RLock()  # a re-login may send through this transport
        # Answers read before the command asked (cli/early.py): `preloaded(method, path,
        # params, token)` hands out the answer of that very request once, or None.
        self.preloaded: Preloaded | None = None

    @property
    def http(self) -> httpx.Client:
        """The httpx client (made now if it was given as a factory)."""
        http = self._http
        if http is None:
            with self._login_lock:
                http = self._http = self._http or self._make_http()
        return http

    def close(self) -> None:
        """Close the httpx client, if one was made."""
        if self._http is not None:
            self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        files: Any = None,
        headers: dict[str, str] | None = None,
        idempotent: bool | None = None,
        timeout: float | None = None,
        raw: bool = False,
        retry_statuses: frozenset[int] = RETRY_STATUSES,
    ) -> Any:
        """Send one API call; return the decoded JSON (or the response when `raw`).

        Idempotent calls (GET/PUT/DELETE, or `idempotent=True`) are retried on connect errors and
        429/502/503/504 (`retry_statuses`); a POST that creates something is never retried.
        """
        method = method.upper()
        retryable = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        clean_params = {k: v for k, v in (params or {}).items() if v is not None}
        # Only a per-call timeout is passed: the client's default sentinel belongs to the
        # injected client's own library (starlette's TestClient may be built on `httpx2`).
        per_call: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        early = None
        if self.preloaded is not None and method == "GET" and not raw:
            early = self.preloaded(path, clean_params, self.token)
            if early is not None and early.is_json_ok:
                with self._count_lock:
                    self.request_count += 1
                return _decoded(early.body)
        import httpx  # here, not at the top: see `http`

        reauthed = False
        attempt = 0
        started = self.clock()
        while True:
            send_headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
            sent_token = self.token
            if sent_token:
                send_headers["Authorization"] = f"Bearer {sent_token}"
            send_headers.update(headers or {})
            with self._count_lock:
                self.request_count += 1
                if method not in READ_METHODS:
                    self.change_requests += 1
            try:
                if early is not None:  # the first answer, read early (a 401, a 503, ...)
                    request = self.http.build_request(
                        method, path, params=clean_params or None, headers=send_headers
                    )
                    if early.status == 0:  # asked early, not answered in time
                        raise httpx.ReadTimeout("no answer (read early)", request=request)
                    response = httpx.Response(
                        early.status, headers=early.headers, content=early.body, request=request
                    )
                    early = None
                else:
                    response = self.http.request(
                        method,
                        path,
                        params=clean_params or None,
                        json=json,
                        files=files,
                        headers=send_headers,
                        **per_call,
                    )
            except httpx.ConnectError as exc:
                # Refused or unresolvable: nothing listens there, and waiting will not change
                # that within a command (retrying cost 2-4.5 s before the same message).
                raise ConnectError(
                    f"cannot reach the Dumont API at {self.http.base_url} ({connect_reason(exc)})",
                    "check DUMONT_API_URL (unset it to use the local control plane dumont starts "
                    "by itself)",
                ) from exc
            except httpx.ConnectTimeout as exc:
                if retryable and attempt + 1 < self.retry.attempts:
                    self.sleep(self.retry.delay(attempt, None))
                    attempt += 1
                    continue
                raise ConnectError(
                    f"cannot reach the Dumont API at {self.http.base_url} (no answer to connect)",
                    "check DUMONT_API_URL, the network and any firewall",
                ) from exc
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                # The connection broke mid-request: a create may or may not have happened.
                if retryable and attempt + 1 < self.retry.attempts:
                    self.sleep(self.retry.delay(attempt, None))
                    attempt += 1
                    continue
                raise ConnectError(
                    f"the connection to the Dumont API at {self.http.base_url} broke during "
                    f"{method} {path} ({type(exc).__name__})",
                    "check the result before retrying; if it keeps happening, see the server's log",
                ) from exc
            except httpx.TimeoutException as exc:
                raise ConnectError(
                    f"the Dumont API at {self.http.base_url} did not answer "
                    f"{method} {path} in time",
                    "retry, or check the server's load",
                ) from exc
            except httpx.TransportError as exc:  # a proxy or protocol the client cannot use
                raise ConnectError(
                    f"cannot talk to the Dumont API at {self.http.base_url} "
                    f"({type(exc).__name__}: {exc})",
                    "check DUMONT_API_URL and the proxy settings",
                ) from exc
            status = response.status_code
            if status in retry_statuses and retryable and attempt + 1 < self.retry.attempts:
                delay = self.retry.delay(
                    attempt, parse_retry_after(response.headers.get("Retry-After"))
                )
                if self._worth_retrying(response, started, delay):
                    self.sleep(delay)
                    attempt += 1
                    continue
            if status == 401 and self.reauthenticate is not None and not reauthed:
                reauthed = True
                if self._fresh_token(self.reauthenticate, sent_token):
                    continue
            if status >= 400:
                raise self._error(response, method, path)
            if raw:
                return response
            if status == 204 or not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                if is_html(response):
                    raise self._error(response, method, path) from None
                return response.text

    def _worth_retrying(self, response: httpx.Response, started: float, delay: float) -> bool:
        """Whether to retry: not an answer a retry cannot fix, and within the deadline."""
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if is_permanent(response.status_code, body):
            return False
        return self.clock() - started + delay <= self.deadline

    def _fresh_token(self, login: Callable[[], str | None], rejected: str | None) -> bool:
        """After a 401 to `rejected`: log in again, once for all threads; True: retry.

        A thread whose rejected token was already replaced by another thread's login retries
        with the new token instead of logging in a second time.
        """
        with self._login_lock:
            if self.token != rejected and self.token:
                return True
            new_token = login()
            if new_token:
                self.token = new_token
                return True
            return False

    @staticmethod
    def _error(response: httpx.Response, method: str, path: str) -> ApiError:
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        status = response.status_code
        # A web server, not the API (a 5xx page is a proxy's in front of one: kept below). Not
        # its status class: an HTML 404 must never read as "that job is gone".
        if status < 500 and is_html(response):
            base = str(response.request.url.copy_with(path="/", query=None)).rstrip("/")
            return ApiError(
                f"the server at {base} is not a Dumont API: it answered {method} {path} with "
                f"an HTML page (HTTP {status})",
                "check DUMONT_API_URL: the root of a Dumont API, such as http://127.0.0.1:8766 "
                "or https://api.dumontcloud.com",
                status_code=status,
                body=None,
                method=method,
                path=path,
            )
        message = error_message(body, f"HTTP {status}")
        cls = error_for_status(status)
        hint = None
        if status == 401:
            hint = "log in again (`dumont auth login <email> <password>`)"
        elif status == 422:
            message = with_field_problems(body, message)
        else:
            hint = key_hint(status, body)
        return cls(
            f"{method} {path} failed ({status}): {message}",
            hint,
            status_code=status,
            body=body,
            method=method,
            path=path,
        )
