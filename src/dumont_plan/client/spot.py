"""`/api/v1/spot`: templates, spot deployments with failover, and the spot market (contract §8).

Every path is slash-less. Instance ids are integers; template ids text
(`spot_tpl_<instance_id>_<unix_seconds>`). The lists are global on the real platform and the
caller's own on the local control plane. Additive routes of the local control plane:
`POST /spot/interrupt/{instance_id}` (an operator's simulated preemption, for chaos tests).

    template = client.spot.create_template(12, region="US")
    deployed = client.spot.deploy(template.template_id, max_price=0.5, gpu_preference="RTX 4090")
    client.spot.failover(deployed.instance_id).new_instance_id
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from dumont_plan.client.base import Transport
from dumont_plan.client.instances import InstancesAPI
from dumont_plan.errors import NotFoundError
from dumont_plan.wire_models import Offer
from dumont_plan.wire_models.spot import SpotFailover, SpotInstance, SpotPricing, SpotTemplate

PREFIX = "/api/v1/spot"
TEMPLATES = f"{PREFIX}/templates"
INSTANCES = f"{PREFIX}/instances"
DEPLOY = f"{PREFIX}/deploy"
PRICING = f"{PREFIX}/pricing"
COMPARISON = f"{PREFIX}/comparison"


def _instance(action: str, instance_id: int | str) -> str:
    return f"{PREFIX}/{action}/{int(instance_id)}"


def _template(template_id: str) -> str:
    return f"{PREFIX}/template/{quote(str(template_id), safe='')}"


def _items(answer: Any, key: str) -> Any:
    """A list answer, or the list under `key` of an object answer."""
    return answer.get(key) if isinstance(answer, dict) else answer


class SpotAPI:
    """The Spot resource group: `SpotTemplate`, `SpotInstance` and `SpotPricing` read models."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    # -- templates -----------------------------------------------------------------------

    def create_template(
        self,
        instance_id: int | str,
        *,
        region: str | None = None,
        workspace_path: str | None = None,
        idempotency_key: str | None = None,
    ) -> SpotTemplate:
        """`POST /spot/template/{instance_id}`: snapshot the instance's workspace.

        Never retried (it makes a snapshot). `region` unset: the instance's own.
        """
        path = _instance("template", instance_id)
        body = {"region": region, "workspace_path": workspace_path}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        answer = self._t.request(
            "POST",
            path,
            json={k: v for k, v in body.items() if v is not None},
            headers=headers,
            idempotent=False,
        )
        return SpotTemplate.from_wire(answer, f"POST {path}")

    def templates(self) -> list[SpotTemplate]:
        """`GET /spot/templates` -> every template (one call; the list is not paged)."""
        answer = self._t.request("GET", TEMPLATES)
        return SpotTemplate.list_from_wire(_items(answer, "templates"), f"GET {TEMPLATES}")

    def template(self, template_id: str) -> SpotTemplate:
        """One template, found in the list (the API has no GET of one); NotFoundError if none."""
        for template in self.templates():
            if template.template_id == template_id:
                return template
        raise NotFoundError(
            f"spot template {template_id} not found",
            "list them with `dumont spot template list`",
            status_code=404,
        )

    def delete_template(
        self, template_id: str, *, missing_ok: bool = False
    ) -> dict[str, Any] | None:
        """`DELETE /spot/template/{id}` (the snapshot with it, on the local control plane)."""
        try:
            result: dict[str, Any] = self._t.request("DELETE", _template(template_id))
        except NotFoundError:
            if missing_ok:
                return None
            raise
        return result

    # -- deployments -----------------------------------------------------------------------

    def deploy(
        self,
        template_id: str,
        *,
        max_price: float | None = None,
        gpu_preference: str | None = None,
        auto_failover: bool | None = None,
        idempotency_key: str | None = None,
        **extra: Any,
    ) -> SpotInstance:
        """`POST /spot/deploy`: bid for a spot machine and restore the template on it.

        Never retried (it rents a machine); with `idempotency_key` the local control plane
        replays the first answer for a repeated key.
        """
        body: dict[str, Any] = {
            "template_id": template_id,
            "max_price": max_price,
            "gpu_preference": gpu_preference,
            "auto_failover": auto_failover,
            **extra,
        }
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        answer = self._t.request(
            "POST",
            DEPLOY,
            json={k: v for k, v in body.items() if v is not None},
            headers=headers,
            idempotent=False,
        )
        return SpotInstance.from_wire(answer, f"POST {DEPLOY}")

    def instances(self) -> list[SpotInstance]:
        """`GET /spot/instances` -> every spot deployment's status (one call)."""
        answer = self._t.request("GET", INSTANCES)
        return SpotInstance.list_from_wire(_items(answer, "instances"), f"GET {INSTANCES}")

    def status(self, instance_id: int | str) -> SpotInstance:
        """`GET /spot/status/{instance_id}` (404 when it is no spot instance of yours)."""
        path = _instance("status", instance_id)
        return SpotInstance.from_wire(self._t.request("GET", path), f"GET {path}")

    def failover(self, instance_id: int | str) -> SpotFailover:
        """`POST /spot/failover/{instance_id}`: move it to a new spot machine now.

        Never retried: a second call would move the new machine again.
        """
        path = _instance("failover", instance_id)
        answer = self._t.request("POST", path, idempotent=False)
        return SpotFailover.from_wire(answer, f"POST {path}")

    def interrupt(self, instance_id: int | str) -> dict[str, Any]:
        """`POST /spot/interrupt/{instance_id}` (local control plane): preempt it, as the
        market does when outbid; with auto_failover the reconciler moves it."""
        result: dict[str, Any] = self._t.request(
            "POST", _instance("interrupt", instance_id), idempotent=False
        )
        return result

    def stop(self, instance_id: int | str) -> dict[str, Any]:
        """`POST /spot/stop/{instance_id}`: state `stopped`, no more failovers."""
        result: dict[str, Any] = self._t.request(
            "POST", _instance("stop", instance_id), idempotent=True
        )
        return result

    def delete(self, instance_id: int | str, *, missing_ok: bool = False) -> dict[str, Any] | None:
        """`DELETE /spot/instance/{instance_id}`: forget the deployment."""
        try:
            result: dict[str, Any] = self._t.request("DELETE", _instance("instance", instance_id))
        except NotFoundError:
            if missing_ok:
                return None
            raise
        return result

    # -- market ----------------------------------------------------------------------------

    def pricing(
        self,
        region: str | None = None,
        gpu_name: str | None = None,
        include_all: bool | None = None,
    ) -> SpotPricing:
        """`GET /spot/pricing`: cheapest and average bid, savings vs on-demand, top offers."""
        params = {
            "region": region,
            "gpu_name": gpu_name,
            "include_all": None if include_all is None else str(include_all).lower(),
        }
        answer = self._t.request("GET", PRICING, params=params)
        return SpotPricing.from_wire(answer, f"GET {PRICING}")

    def market_offers(self, filters: dict[str, Any]) -> list[Offer]:
        """Offers of two searches with `filters`, cheapest and dearest first: with the
        contract's limit of 100 a page each, they see every GPU model of a market of 200."""
        offers = InstancesAPI(self._t)
        return [
            offer
            for order in ("dph_total", "-dph_total")
            for offer in offers.offers(order_by=order, **filters)
        ]

    def comparison(self) -> dict[str, Any]:
        """`GET /spot/comparison`: monthly cost of on-demand, economic and spot."""
        result: dict[str, Any] = self._t.request("GET", COMPARISON)
        return result
