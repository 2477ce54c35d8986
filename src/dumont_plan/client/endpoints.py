"""`/api/v1/serverless/endpoints` and `/serverless/stats` (contract §7.3): serverless endpoints.

An endpoint is addressed by its id (`ep-xxxxxxxx`). `command`, `concurrency` and
`idle_timeout_seconds` are the local control plane's (additive); `invoke` is its request path
(`/serverless/endpoints/{id}/invoke/{path}`), answered by the endpoint's workload.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from dumont_plan.client.base import Transport
from dumont_plan.errors import UnexpectedResponseError

if TYPE_CHECKING:
    import httpx  # annotations only: the transport loads it when it sends

PREFIX = "/api/v1/serverless"


def _object(answer: Any, where: str) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise UnexpectedResponseError(
            f"{where}: the API answered with {type(answer).__name__}, not an object",
            "check that DUMONT_API_URL points at a Dumont API v1 server",
        )
    return answer


def _of(endpoint_id: str, action: str = "") -> str:
    path = f"{PREFIX}/endpoints/{quote(endpoint_id, safe='')}"
    return f"{path}/{action}" if action else path


class EndpointsAPI:
    """Serverless endpoints (the contract's Endpoint objects, as dicts) and their stats."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def list(self) -> builtins.list[dict[str, Any]]:
        path = f"{PREFIX}/endpoints"
        answer = _object(self._t.request("GET", path), f"GET {path}")
        items = answer.get("endpoints")
        if not isinstance(items, builtins.list):
            raise UnexpectedResponseError(
                f"GET {path}: the API answered without a list of endpoints",
                "check that DUMONT_API_URL points at a Dumont API v1 server",
            )
        return [item for item in items if isinstance(item, dict)]

    def create(self, **fields: Any) -> dict[str, Any]:
        """`POST /serverless/endpoints` (`name` and `docker_image` required; unset fields
        take the server's defaults). Not retried: a retry could create a second one."""
        path = f"{PREFIX}/endpoints"
        body = {k: v for k, v in fields.items() if v is not None}
        return _object(self._t.request("POST", path, json=body), f"POST {path}")

    def get(self, endpoint_id: str) -> dict[str, Any]:
        path = _of(endpoint_id)
        return _object(self._t.request("GET", path), f"GET {path}")

    def update(self, endpoint_id: str, **changes: Any) -> dict[str, Any]:
        path = _of(endpoint_id)
        body = {k: v for k, v in changes.items() if v is not None}
        return _object(self._t.request("PUT", path, json=body), f"PUT {path}")

    def delete(self, endpoint_id: str) -> dict[str, Any]:
        path = _of(endpoint_id)
        return _object(self._t.request("DELETE", path), f"DELETE {path}")

    def pause(self, endpoint_id: str) -> dict[str, Any]:
        path = _of(endpoint_id, "pause")
        return _object(self._t.request("POST", path, idempotent=True), f"POST {path}")

    def resume(self, endpoint_id: str) -> dict[str, Any]:
        path = _of(endpoint_id, "resume")
        return _object(self._t.request("POST", path, idempotent=True), f"POST {path}")

    def stats(self) -> dict[str, Any]:
        path = f"{PREFIX}/stats"
        return _object(self._t.request("GET", path), f"GET {path}")

    def invoke(
        self,
        endpoint_id: str,
        path: str = "",
        *,
        json: Any = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """GET (no `json`) or POST `json` to the endpoint's workload at `path`; the raw
        answer (its `X-Dumont-Cold-Start` header says whether a worker had to boot). Not
        retried: the workload may not be idempotent."""
        url = _of(endpoint_id, "invoke/" + quote(path.lstrip("/"), safe="/?=&"))
        method = "GET" if json is None else "POST"
        answer: httpx.Response = self._t.request(
            method, url, json=json, raw=True, idempotent=False, timeout=timeout
        )
        return answer
