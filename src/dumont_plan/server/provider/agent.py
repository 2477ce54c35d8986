"""The agent token of an instance: what its own processes use to send heartbeats.

An instance's processes get `DUMONT_AGENT_TOKEN` (`<instance id>.<hex HMAC-SHA256 under the
server's secret>`) and `DUMONT_AGENT_URL` (the heartbeat route on loopback) in their
environment. `POST /agent/status` with `X-Dumont-Agent-Token` is then accepted for that one
instance, on behalf of its owner, without the owner's login token (which a workload should not
hold). The token names its instance, so it is checked before the body is read.
"""

from __future__ import annotations

import hashlib
import hmac

from dumont_plan.server.context import AppState

HEADER = "X-Dumont-Agent-Token"
TOKEN_VAR = "DUMONT_AGENT_TOKEN"
URL_VAR = "DUMONT_AGENT_URL"


def _digest(secret: str, instance_id: int) -> str:
    message = f"dumont agent heartbeat:{instance_id}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def agent_token(state: AppState, instance_id: int) -> str:
    return f"{instance_id}.{_digest(state.secret, instance_id)}"


def token_instance(state: AppState, token: str) -> int | None:
    """The instance id an agent token was issued for, or None when it is not one of ours."""
    head, _, digest = token.strip().partition(".")
    if not head.isdigit() or len(head) > 19:
        return None
    instance_id = int(head)
    # as bytes: compare_digest raises a TypeError on a str with non-ASCII characters
    expected = _digest(state.secret, instance_id).encode()
    if not hmac.compare_digest(digest.encode("utf-8", "replace"), expected):
        return None
    return instance_id


def agent_env(state: AppState, instance_id: int) -> dict[str, str]:
    """What an instance's processes get to send heartbeats (no URL for an in-process app)."""
    env = {TOKEN_VAR: agent_token(state, instance_id)}
    port = state.settings.port
    if port:
        env[URL_VAR] = f"http://127.0.0.1:{port}/api/v1/agent/status"
    return env
