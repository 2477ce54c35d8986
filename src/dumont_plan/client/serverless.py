"""`/api/v1/serverless`: an instance paused when idle and woken on demand (contract §7.1, §7.2).

A policy is keyed by its instance's id (an integer): `enable` is an upsert that replaces the
whole policy, so it is safe to retry; `disable` resumes a paused instance first. `pricing` and
`overview` (`GET /serverless/status`) are public. The local control plane adds `webhook_url`
/ `webhook_secret` to the enable body and a delivery log (`GET /serverless/webhooks/{id}`).
"""

from __future__ import annotations

import builtins
from typing import Any

from dumont_plan.client.base import Transport
from dumont_plan.errors import NotFoundError, UnexpectedResponseError
from dumont_plan.wire_models import ServerlessPolicy, ServerlessWake

PREFIX = "/api/v1/serverless"


def _of(action: str, instance_id: int | str) -> str:
    return f"{PREFIX}/{action}/{int(instance_id)}"


def _object(answer: Any, where: str) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise UnexpectedResponseError(
            f"{where}: the API answered with {type(answer).__name__}, not an object",
            "check that DUMONT_API_URL points at a Dumont API v1 server",
        )
    return answer


class ServerlessAPI:
    """Serverless policies (`ServerlessPolicy`), wakes (`ServerlessWake`), pricing."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def enable(
        self,
        instance_id: int | str,
        *,
        mode: str | None = None,
        idle_timeout_seconds: int | None = None,
        gpu_threshold: float | None = None,
        keep_warm: bool | None = None,
        max_price: float | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> dict[str, Any]:
        """`POST /serverless/enable/{id}` -> the enable answer (`status: enabled`, `behavior`).

        An upsert (the whole policy is replaced; unset fields take the server's defaults), so
        it is retried like any idempotent call. `max_price` (spot: a wake's highest bid),
        `webhook_url` and `webhook_secret` are the local control plane's; the secret is sent,
        never returned.
        """
        body = {
            "mode": mode,
            "idle_timeout_seconds": idle_timeout_seconds,
            "gpu_threshold": gpu_threshold,
            "keep_warm": keep_warm,
            "max_price": max_price,
            "webhook_url": webhook_url,
            "webhook_secret": webhook_secret,
        }
        path = _of("enable", instance_id)
        answer = self._t.request(
            "POST",
            path,
            json={k: v for k, v in body.items() if v is not None},
            idempotent=True,
        )
        return _object(answer, f"POST {path}")

    def disable(self, instance_id: int | str, *, missing_ok: bool = False) -> dict[str, Any] | None:
        """`POST /serverless/disable/{id}` (a paused instance is resumed first).

        With `missing_ok`, a policy (or instance) that is already gone is not an error (None).
        """
        path = _of("disable", instance_id)
        try:
            answer = self._t.request("POST", path, idempotent=True)
        except NotFoundError:
            if missing_ok:
                return None
            raise
        return _object(answer, f"POST {path}")

    def status(self, instance_id: int | str) -> ServerlessPolicy:
        """`GET /serverless/status/{id}` -> the policy and its live state (404: none)."""
        path = _of("status", instance_id)
        return ServerlessPolicy.from_wire(self._t.request("GET", path), f"GET {path}")

    def list(self) -> builtins.list[ServerlessPolicy]:
        """`GET /serverless/list` -> the caller's policies (one call; the list is not paged)."""
        path = f"{PREFIX}/list"
        answer = self._t.request("GET", path)
        items = answer.get("instances") if isinstance(answer, dict) else answer
        return ServerlessPolicy.list_from_wire(items, f"GET {path}")

    def wake(self, instance_id: int | str, *, timeout: float | None = None) -> ServerlessWake:
        """`POST /serverless/wake/{id}` -> `resumed` and the measured `cold_start_seconds`,
        or `already_running`. Retried on transient errors: waking twice is harmless."""
        path = _of("wake", instance_id)
        answer = self._t.request("POST", path, idempotent=True, timeout=timeout)
        return ServerlessWake.from_wire(answer, f"POST {path}")

    def pricing(self) -> dict[str, Any]:
        """`GET /serverless/pricing` (public): the monthly cost model of each mode (§7.2)."""
        path = f"{PREFIX}/pricing"
        return _object(self._t.request("GET", path), f"GET {path}")

    def overview(self) -> dict[str, Any]:
        """`GET /serverless/status` (public): totals and the available modes (§7.2)."""
        path = f"{PREFIX}/status"
        return _object(self._t.request("GET", path), f"GET {path}")

    def webhooks(self, instance_id: int | str) -> builtins.list[dict[str, Any]]:
        """`GET /serverless/webhooks/{id}` (local control plane): the webhook deliveries,
        each with its event, attempts and outcome."""
        path = _of("webhooks", instance_id)
        answer = self._t.request("GET", path)
        items = answer.get("deliveries") if isinstance(answer, dict) else answer
        if not isinstance(items, builtins.list):
            raise UnexpectedResponseError(
                f"GET {path}: the API answered without a list of deliveries",
                "check that DUMONT_API_URL points at a Dumont API v1 server",
            )
        return [item for item in items if isinstance(item, dict)]

    def inference_start(self, instance_id: int | str) -> dict[str, Any]:
        """`POST /serverless/inference-start/{id}`: reset the idle timer (wakes a paused one)."""
        path = _of("inference-start", instance_id)
        return _object(self._t.request("POST", path, idempotent=True), f"POST {path}")

    def inference_complete(self, instance_id: int | str) -> dict[str, Any]:
        """`POST /serverless/inference-complete/{id}`: start the idle timer."""
        path = _of("inference-complete", instance_id)
        return _object(self._t.request("POST", path, idempotent=True), f"POST {path}")
