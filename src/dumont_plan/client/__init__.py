"""httpx client for the Dumont API v1: `DumontClient(http).jobs.create(...)`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dumont_plan.client.auth import AuthAPI
from dumont_plan.client.base import RetryPolicy, Transport, tls_for
from dumont_plan.client.blacklist import BlacklistAPI
from dumont_plan.client.endpoints import EndpointsAPI
from dumont_plan.client.finetune import FinetuneAPI
from dumont_plan.client.history import HistoryAPI
from dumont_plan.client.instances import InstancesAPI
from dumont_plan.client.jobs import JobsAPI
from dumont_plan.client.serverless import ServerlessAPI
from dumont_plan.client.spot import SpotAPI

if TYPE_CHECKING:
    import httpx

__all__ = ["DumontClient", "RetryPolicy", "Transport", "health", "is_healthy"]


class DumontClient:
    """The Dumont API v1 over an injected `httpx.Client` (its base_url is the server root), or
    a function that makes one when the first request goes out."""

    def __init__(
        self,
        http: httpx.Client | Callable[[], httpx.Client],
        token: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] | None = None,
        reauthenticate: Callable[[], str | None] | None = None,
    ) -> None:
        self.transport = Transport(
            http,
            token,
            retry=retry,
            reauthenticate=reauthenticate,
            sleep=time.sleep if sleep is None else sleep,
        )
        self._capabilities: frozenset[str] | None = None
        self.auth = AuthAPI(self.transport)
        self.jobs = JobsAPI(self.transport)
        self.finetune = FinetuneAPI(self.transport)
        self.instances = InstancesAPI(self.transport)
        self.history = HistoryAPI(self.transport)
        self.blacklist = BlacklistAPI(self.transport)
        self.serverless = ServerlessAPI(self.transport)
        self.endpoints = EndpointsAPI(self.transport)
        self.spot = SpotAPI(self.transport)

    @property
    def token(self) -> str | None:
        return self.transport.token

    @token.setter
    def token(self, value: str | None) -> None:
        self.transport.token = value

    def health(self) -> dict[str, object]:
        result: dict[str, object] = self.transport.request("GET", "/health")
        return result

    def capabilities(self) -> frozenset[str]:
        """The additive capabilities `/health` lists (read once per client; none: the real
        platform's answer, so every extension counts as absent)."""
        if self._capabilities is None:
            listed = self.health().get("capabilities")
            names = listed if isinstance(listed, list) else []
            self._capabilities = frozenset(str(c) for c in names)
        return self._capabilities

    def close(self) -> None:
        self.transport.close()


def health(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """One unauthenticated `GET {url}/health` (no retries): its body when `healthy`, else None."""
    import httpx

    try:
        response = httpx.get(f"{url}/health", timeout=timeout, verify=tls_for(url))
        body = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    healthy = (
        response.status_code == 200 and isinstance(body, dict) and body.get("status") == "healthy"
    )
    return body if healthy else None


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    """One unauthenticated `GET {url}/health` (no retries): does it answer `healthy`?"""
    return health(url, timeout) is not None
