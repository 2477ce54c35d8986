"""Serverless webhooks: signed JSON events POSTed to a policy's `webhook_url`, with retries.

An event (`paused`, `woken`, `wake_failed`) is queued as a row of `serverless_webhooks` in the
transaction that records the transition; a worker thread of this app (started on first use,
stopped with the app) sends due rows, so a slow or dead receiver never holds the reconciler.
A failure (a refused connection, a timeout, a 5xx or 429) is retried with backoff
(`RETRY_DELAYS`); a 2xx ends it `delivered`, another 4xx `failed` at once. Queued rows survive
a restart of the control plane and are sent after it.

Signature (when the policy has a `webhook_secret`): the header
`X-Dumont-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`. A
receiver recomputes the HMAC over the raw body, compares in constant time, and rejects a `t`
older than it tolerates (replays). The secret is sealed at rest (`seal`): encrypted with a
keystream of HMAC-SHA256 under a key derived from the server's own secret (counter mode, a
random nonce per value) and authenticated by a second HMAC; it is never returned or logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from dumont_plan.server.context import AppState
from dumont_plan.server.provider.history import iso

log = logging.getLogger("dumont_plan.server.webhooks")

EVENTS = ("paused", "woken", "wake_failed")
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)  # seconds before attempts 2..6
SEND_TIMEOUT = 5.0
SIGNATURE_HEADER = "X-Dumont-Signature"
SERVICE = "serverless-webhooks"
_SEAL_VERSION = "v1"


# ---------------------------------------------------------------------------- sealing


def _keys(server_secret: str) -> tuple[bytes, bytes]:
    base = server_secret.encode()
    enc = hmac.new(base, b"dumont serverless webhook secret: encryption", hashlib.sha256).digest()
    mac = hmac.new(base, b"dumont serverless webhook secret: mac", hashlib.sha256).digest()
    return enc, mac


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = []
    for counter in range((length + 31) // 32):
        blocks.append(hmac.new(key, nonce + counter.to_bytes(8, "big"), hashlib.sha256).digest())
    return b"".join(blocks)[:length]


def seal(server_secret: str, value: str) -> str:
    """`value` encrypted and authenticated under the server's secret (text for the database)."""
    enc, mac = _keys(server_secret)
    nonce = os.urandom(16)
    plain = value.encode()
    cipher = bytes(a ^ b for a, b in zip(plain, _keystream(enc, nonce, len(plain)), strict=True))
    tag = hmac.new(mac, nonce + cipher, hashlib.sha256).digest()
    return f"{_SEAL_VERSION}:" + base64.b64encode(nonce + tag + cipher).decode()


def unseal(server_secret: str, sealed: str) -> str | None:
    """The value `seal` hid, or None when it was sealed under another secret or damaged."""
    version, _, payload = sealed.partition(":")
    try:
        raw = base64.b64decode(payload, validate=True)
    except ValueError:
        return None
    if version != _SEAL_VERSION or len(raw) < 48:
        return None
    nonce, tag, cipher = raw[:16], raw[16:48], raw[48:]
    enc, mac = _keys(server_secret)
    if not hmac.compare_digest(tag, hmac.new(mac, nonce + cipher, hashlib.sha256).digest()):
        return None
    stream = _keystream(enc, nonce, len(cipher))
    return bytes(a ^ b for a, b in zip(cipher, stream, strict=True)).decode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Dumont-Signature` value of `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


# ---------------------------------------------------------------------------- queue


def enqueue(
    conn: Any,
    policy: Any,
    event: str,
    data: dict[str, Any],
    now: float,
) -> bool:
    """Queue `event` for `policy` (a serverless_policies row) inside the caller's transaction;
    False when the policy has no webhook."""
    url = policy["webhook_url"]
    if not url:
        return False
    cursor = conn.execute(
        "INSERT INTO serverless_webhooks (instance_id, user_id, event, url, secret, body, "
        "status, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, '', 'pending', ?, ?)",
        (
            int(policy["instance_id"]),
            int(policy["user_id"]),
            event,
            url,
            policy["webhook_secret"],
            time.time(),
            now,
        ),
    )
    delivery_id = int(cursor.lastrowid or 0)
    body = {
        "id": f"evt_{delivery_id}",
        "event": event,
        "instance_id": int(policy["instance_id"]),
        "mode": policy["mode"],
        "created_at": iso(now),
        "data": data,
    }
    conn.execute(
        "UPDATE serverless_webhooks SET body = ? WHERE id = ?",
        (json.dumps(body, separators=(",", ":"), sort_keys=True), delivery_id),
    )
    return True


def deliveries(state: AppState, user_id: int, instance_id: int) -> list[dict[str, Any]]:
    """The delivery log of one of the user's instances, oldest first (no secret, no signature)."""
    rows = state.store.query(
        "SELECT * FROM serverless_webhooks WHERE user_id = ? AND instance_id = ? ORDER BY id",
        (user_id, instance_id),
    )
    return [
        {
            "id": int(r["id"]),
            "event": r["event"],
            "url": r["url"],
            "status": r["status"],
            "attempts": int(r["attempts"]),
            "last_status_code": r["last_status"],
            "last_error": r["last_error"],
            "created_at": iso(float(r["created_at"])),
            "delivered_at": iso(r["delivered_at"]),
            "next_attempt_at": iso(r["next_attempt_at"]) if r["status"] == "pending" else None,
            "signed": r["secret"] is not None,
            "payload": json.loads(r["body"]),
        }
        for r in rows
    ]


# ---------------------------------------------------------------------------- sender


class WebhookSender:
    """The app's delivery thread: sends due rows, reschedules failures, stops with the app."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="webhooks", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=SEND_TIMEOUT + 2)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.send_due()
            except Exception:  # a bad row must not end the thread
                log.exception("webhook delivery pass failed")
            self._wake.wait(0.2)
            self._wake.clear()

    def send_due(self) -> None:
        rows = self.state.store.query(
            "SELECT * FROM serverless_webhooks WHERE status = 'pending' AND next_attempt_at <= ? "
            "ORDER BY id LIMIT 50",
            (time.time(),),
        )
        for row in rows:
            if self._stop.is_set():
                return
            self._attempt(row)

    def _attempt(self, row: Any) -> None:
        body = str(row["body"]).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "dumont-local-control-plane",
            "X-Dumont-Event": str(row["event"]),
            "X-Dumont-Delivery": str(row["id"]),
        }
        sealed = row["secret"]
        if sealed:
            secret = unseal(self.state.secret, str(sealed))
            if secret is not None:
                headers[SIGNATURE_HEADER] = signature(secret, int(time.time()), body)
        status: int | None = None
        error: str | None = None
        request = urllib.request.Request(str(row["url"]), data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=SEND_TIMEOUT) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            status = int(exc.code)
            error = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            error = f"{type(exc).__name__}: {reason}"[:300]
        attempts = int(row["attempts"]) + 1
        now = time.time()
        if status is not None and 200 <= status < 300:
            outcome, next_at, error = "delivered", None, None
        elif (status is None or status >= 500 or status == 429) and attempts <= len(RETRY_DELAYS):
            outcome, next_at = "pending", now + RETRY_DELAYS[attempts - 1]
        else:
            outcome, next_at = "failed", None
        self.state.store.execute(
            "UPDATE serverless_webhooks SET status = ?, attempts = ?, next_attempt_at = ?, "
            "last_status = ?, last_error = ?, delivered_at = ? WHERE id = ?",
            (
                outcome,
                attempts,
                next_at,
                status,
                error,
                now if outcome == "delivered" else None,
                int(row["id"]),
            ),
        )


_guard = threading.Lock()


def sender(state: AppState) -> WebhookSender:
    """The app's sender, started on first use and stopped when the app shuts down."""
    with _guard:
        found = state.services.get(SERVICE)
        if isinstance(found, WebhookSender):
            return found
        created = WebhookSender(state)
        state.services[SERVICE] = created
        state.closers.append(created.stop)
        return created


def start_if_pending(state: AppState) -> None:
    """Start the sender when rows wait from before a restart (called by the reconciler)."""
    if SERVICE in state.services:
        return
    if state.store.query_one("SELECT 1 FROM serverless_webhooks WHERE status = 'pending'"):
        sender(state).notify()
