"""`/api/v1/instances`: GPU offers and the instances made from them (contract §3).

The collection has no trailing slash (`GET /api/v1/instances`; `/instances/` is a 404 on the real
platform). Instance ids are integers. Statuses are the provider's: `status` is the *intended*
state (`running`, `stopped`), `actual_status` the *actual* one (`loading`, `running`, `exited`…);
a paused instance reports `stopped`, never `paused` (quirk 16), so `paused` is mapped here.
"""

from __future__ import annotations

import builtins
from typing import Any

from dumont_plan.client.base import Transport
from dumont_plan.errors import NotFoundError
from dumont_plan.wire_models import INSTANCE_FAILED_STATUSES, Instance, Offer

COLLECTION = "/api/v1/instances"
OFFERS = "/api/v1/instances/offers"

# What people type -> what the provider reports (contract §3.2: pausing sets `stopped`).
STATUS_ALIASES = {"paused": "stopped"}
RUNNING = "running"
FAILED_STATUSES = INSTANCE_FAILED_STATUSES


def wire_status(status: str) -> str:
    """The provider's word for a status a person typed (`paused` -> `stopped`)."""
    lowered = status.strip().lower()
    return STATUS_ALIASES.get(lowered, lowered)


def _item(instance_id: int | str) -> str:
    return f"{COLLECTION}/{int(instance_id)}"


class InstancesAPI:
    """The Instances resource group: `Instance` and `Offer` read models (`.raw`: the JSON)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def offers(self, **filters: Any) -> list[Offer]:
        """`GET /api/v1/instances/offers` with the contract's filters (§3.1) -> the offers.

        Filters are the query parameters by name (`gpu_name`, `num_gpus`, `max_price`,
        `min_inet_down`, `region`, `limit`, `machine_type`, `include_blacklisted`, …);
        None values are left out so the server's defaults apply.
        """
        params = {
            key: (str(value).lower() if isinstance(value, bool) else value)
            for key, value in filters.items()
            if value is not None
        }
        answer = self._t.request("GET", OFFERS, params=params)
        offers = answer.get("offers") if isinstance(answer, dict) else answer
        return Offer.list_from_wire(offers, f"GET {OFFERS}")

    def list(self, status: str | None = None) -> list[Instance]:
        """`GET /api/v1/instances[?status=…]` -> the instances (`paused` means `stopped`)."""
        params = {"status": wire_status(status) if status else None}
        answer = self._t.request("GET", COLLECTION, params=params)
        instances = answer.get("instances") if isinstance(answer, dict) else answer
        return Instance.list_from_wire(instances, f"GET {COLLECTION}")

    def list_all(self) -> builtins.list[Instance]:
        """Every instance of the caller in one call (the collection is not paged)."""
        return self.list()

    def get(self, instance_id: int | str) -> Instance:
        """`GET /api/v1/instances/{id}` -> the Instance (404 when unknown or someone else's)."""
        path = _item(instance_id)
        return Instance.from_wire(self._t.request("GET", path), f"GET {path}")

    def create(
        self,
        offer_id: int,
        *,
        image: str | None = None,
        disk_size: float | None = None,
        label: str | None = None,
        ports: builtins.list[int] | None = None,
        onstart_cmd: str | None = None,
        skip_standby: bool | None = True,
        idempotency_key: str | None = None,
        **extra: Any,
    ) -> Instance:
        """`POST /api/v1/instances` -> 201 and the new Instance (status `loading`).

        Never retried: it rents a machine. With `idempotency_key` the local control plane
        replays the first answer for a repeated key instead of renting a second machine.
        """
        body: dict[str, Any] = {
            "offer_id": int(offer_id),
            "image": image,
            "disk_size": disk_size,
            "label": label,
            "ports": ports,
            "onstart_cmd": onstart_cmd,
            "skip_standby": skip_standby,
            **extra,
        }
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        result = self._t.request(
            "POST",
            COLLECTION,
            json={k: v for k, v in body.items() if v is not None},
            headers=headers,
            idempotent=False,
        )
        return Instance.from_wire(result, f"POST {COLLECTION}")

    def pause(self, instance_id: int | str) -> dict[str, Any]:
        """`POST /api/v1/instances/{id}/pause` (stops the processes, keeps the disk)."""
        result: dict[str, Any] = self._t.request(
            "POST", _item(instance_id) + "/pause", idempotent=True
        )
        return result

    def exec(self, instance_id: int | str, command: str, timeout: float = 60) -> dict[str, Any]:
        """`POST /api/v1/instances/{id}/exec` (additive, local control plane): run `command`;
        `{exit_code, timed_out, output, truncated, duration_seconds}`. Never retried: a
        command may have side effects."""
        result: dict[str, Any] = self._t.request(
            "POST",
            _item(instance_id) + "/exec",
            json={"command": command, "timeout_seconds": timeout},
            timeout=timeout + 30,
        )
        return result

    def resume(self, instance_id: int | str) -> dict[str, Any]:
        """`POST /api/v1/instances/{id}/resume` (restarts a paused instance)."""
        result: dict[str, Any] = self._t.request(
            "POST", _item(instance_id) + "/resume", idempotent=True
        )
        return result

    def delete(
        self, instance_id: int | str, reason: str | None = None, *, missing_ok: bool = False
    ) -> dict[str, Any] | None:
        """`DELETE /api/v1/instances/{id}[?reason=…]`; idempotent (retried on transient errors).

        `reason` tells the server why (`user_request` by default; `race_loser` for a wizard
        race's cancelled machine, which the history does not count as a failure). With
        `missing_ok`, an instance that is already gone is not an error (returns None).
        """
        try:
            result: dict[str, Any] = self._t.request(
                "DELETE", _item(instance_id), params={"reason": reason}
            )
        except NotFoundError:
            if missing_ok:
                return None
            raise
        return result
