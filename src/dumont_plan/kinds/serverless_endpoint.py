"""`serverless_endpoint.*`: a request-driven endpoint (contract §7.3, `dumont serverless
endpoint`). Its scaling changes in place (`PUT`); its workload makes a new endpoint (a new id
and URL, so whatever references `${serverless_endpoint.NAME.url}` follows it).

    command, image, gpu, machine_type                       -> replace
    min_instances, max_instances,
    idle_timeout_seconds, concurrency                       -> update in place (PUT)
    deleted outside dumont                                  -> create

Cost: the GPU's $/h × `min_instances` (the workers kept when idle: 0 scales to zero), with the
worst case at `max_instances` beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel

from dumont_plan.kinds.base import BaseHandler, FieldClass, cheapest_gpu_price
from dumont_plan.spec.serverless_endpoint import ServerlessEndpointSpec
from dumont_plan.wire_models import Offer, WireModel
from dumont_plan.wire_models.endpoint import ServerlessEndpoint

_R, _U, _C, _O = FieldClass.replace, FieldClass.updatable, FieldClass.control, FieldClass.output

ENDPOINT_FIELDS: dict[str, FieldClass] = {
    "command": _R,
    "image": _R,
    "gpu": _R,
    "machine_type": _R,
    "min_instances": _U,
    "max_instances": _U,
    "idle_timeout_seconds": _U,
    "concurrency": _U,
    "depends_on": _C,
    "lifecycle": _C,
    "id": _O,
    "url": _O,
    "status": _O,
}
# Fields the server may fill when the spec leaves them unset.
SERVER_CHOICE = frozenset({"idle_timeout_seconds", "concurrency"})
# The fields a `PUT` changes.
UPDATABLE = ("min_instances", "max_instances", "idle_timeout_seconds", "concurrency")


def money(value: float) -> str:
    return f"${value:.2f}/h"


class ServerlessEndpointHandler(BaseHandler[ServerlessEndpoint]):
    kind: ClassVar[str] = "serverless_endpoint"
    section: ClassVar[str] = "serverless_endpoints"
    spec_model: ClassVar[type[BaseModel]] = ServerlessEndpointSpec
    live_model: ClassVar[type[WireModel]] = ServerlessEndpoint
    fields: ClassVar[dict[str, FieldClass]] = ENDPOINT_FIELDS
    unset_is_any: ClassVar[frozenset[str]] = SERVER_CHOICE
    notes: ClassVar[dict[str, str]] = {
        "command": "serves HTTP on $PORT; a new command is a new endpoint (new id and url)",
        "min_instances": "workers kept when idle (0: scale to zero); the plan's $/h floor",
        "max_instances": "most workers under load; the plan's worst case $/h",
        "idle_timeout_seconds": "unset: the server's choice, never diffed",
        "concurrency": "requests in flight per worker; unset: the server's choice",
        "url": "the request path: ${serverless_endpoint.NAME.url}",
    }

    # -- live objects ----------------------------------------------------------------------

    def live_id(self, live: ServerlessEndpoint) -> str:
        return live.id

    def live_name(self, live: ServerlessEndpoint) -> str | None:
        return live.name

    def live_created(self, live: ServerlessEndpoint) -> str:
        return live.created_at or ""

    def status(self, live: ServerlessEndpoint) -> str:
        return live.status

    def is_failed(self, live: ServerlessEndpoint) -> bool:
        return live.status in ("failed", "error")

    def live_values(self, live: ServerlessEndpoint) -> dict[str, Any]:
        echoed = {
            "command": live.command,
            "image": live.docker_image,
            "gpu": live.gpu_name,
            "machine_type": live.machine_type,
            "min_instances": live.min_instances,
            "max_instances": live.max_instances,
            "idle_timeout_seconds": live.idle_timeout_seconds,
            "concurrency": live.concurrency,
        }
        return {k: v for k, v in echoed.items() if v is not None}

    def observed_view(self, live: ServerlessEndpoint | None) -> dict[str, Any]:
        if live is None:
            return {"present": False}
        return {"present": True, "id": live.id, "url": live.url, **self.live_values(live)}

    def outputs(self, live: ServerlessEndpoint) -> dict[str, Any]:
        out = super().outputs(live)
        out["url"] = live.url
        return out

    def normalize(self, field: str, value: Any) -> Any:
        if field == "machine_type" and isinstance(value, str):
            return value.strip().lower()
        return value

    def describe(self, values: Mapping[str, Any]) -> str:
        """`RTX 4090 spot, 0-3 workers`."""
        low, high = values.get("min_instances") or 0, values.get("max_instances") or 1
        machine = values.get("machine_type") or "spot"
        return f"{values.get('gpu') or 'RTX 4090'} {machine}, {low}-{high} workers"

    # -- cost ------------------------------------------------------------------------------

    def price_query(self, values: Mapping[str, Any]) -> dict[str, Any] | None:
        spot = (values.get("machine_type") or "spot") == "spot"
        return {
            "gpu_name": values.get("gpu"),
            "num_gpus": 1,
            "max_price": 1000,
            "min_disk": 0,
            "min_inet_down": 0,
            "min_inet_up": 0,
            "order_by": "dph_total",
            "limit": 100,
            "machine_type": "interruptible" if spot else None,
        }

    def worker_price(self, values: Mapping[str, Any], offers: Sequence[Offer]) -> float | None:
        """One worker's $/h: the cheapest offer of its GPU (the spot bid when spot)."""
        spot = (values.get("machine_type") or "spot") == "spot"
        return cheapest_gpu_price(offers, str(values.get("gpu") or ""), 1, spot)

    def hourly_price(self, values: Mapping[str, Any], offers: Sequence[Offer]) -> float | None:
        """The idle floor: one worker's $/h × `min_instances` (0 when it scales to zero)."""
        price = self.worker_price(values, offers)
        if price is None:
            return None
        return price * int(values.get("min_instances") or 0)

    def cost_notes(self, values: Mapping[str, Any], offers: Sequence[Offer]) -> list[str]:
        price = self.worker_price(values, offers)
        if price is None:
            return []
        high = int(values.get("max_instances") or 1)
        return [f"worst case {money(price * high)} at {high} workers ({money(price)} each)"]

    # -- requests --------------------------------------------------------------------------

    def request_body(self, project: str, name: str, values: dict[str, Any]) -> dict[str, Any]:
        """The create body (contract §7.3 plus the local control plane's additive fields)."""
        body: dict[str, Any] = {
            "name": self.remote_name(project, name, values),
            "command": values.get("command"),
            "docker_image": values.get("image"),
            "gpu_name": values.get("gpu"),
            "machine_type": values.get("machine_type"),
        }
        for key in UPDATABLE:
            body[key] = values.get(key)
        return {k: v for k, v in body.items() if v is not None}
