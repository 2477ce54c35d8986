"""`spot_deployment.*` through the API: list, deploy from a template, stop and delete
(`kinds.spot_deployment` holds the decisions).

A deployment is found by its id (`SpotInstance.identity`) in the one list call, since its
instance id changes at each failover. A GPU name is sent in the market's spelling (`RTX4090`
-> `RTX 4090`, `offers.MarketNames`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from dumont_plan.client import DumontClient
from dumont_plan.errors import ApiError, NotFoundError
from dumont_plan.kinds.ops import KindOps, KindServices
from dumont_plan.offers import MARKET_FILTERS, MarketNames
from dumont_plan.wire_models import WireModel
from dumont_plan.wire_models.spot import SpotInstance


def find(client: DumontClient, remote_id: str) -> SpotInstance | None:
    """The deployment `remote_id` (its id, or an older server's instance id), if listed."""
    return next((s for s in client.spot.instances() if s.identity == remote_id), None)


class SpotDeploymentOps:
    kind = "spot_deployment"

    def list_live(self, client: DumontClient) -> list[SpotInstance]:
        return client.spot.instances()

    def create(
        self, client: DumontClient, body: dict[str, Any], idempotency_key: str
    ) -> SpotInstance:
        """Deploy; the deployment's status (the deploy answer has no state and no id)."""
        gpu = body.get("gpu_preference")
        if gpu:
            try:
                names = MarketNames.of(client.spot.market_offers(MARKET_FILTERS))
            except ApiError:
                names = MarketNames()
            gpu = names.gpu(str(gpu), "gpu_preference")
        made = client.spot.deploy(
            str(body["template"]),
            max_price=body.get("max_price"),
            gpu_preference=gpu,
            auto_failover=body.get("auto_failover"),
            idempotency_key=idempotency_key,
        )
        try:
            return client.spot.status(made.instance_id)
        except NotFoundError:
            return made

    def update(
        self,
        client: DumontClient,
        remote_id: str,
        values: dict[str, Any],
        changed: Sequence[str],
    ) -> SpotInstance | None:
        """Deployments change nothing in place: an update only records lifecycle settings."""
        return None

    def delete(self, client: DumontClient, remote_id: str, live: WireModel | None = None) -> None:
        """Stop its failovers, forget it and delete its machine (the contract's delete keeps
        the machine); whatever is already gone is not an error."""
        current = find(client, remote_id)
        if current is None:
            return
        instance_id = current.instance_id
        with contextlib.suppress(NotFoundError):
            client.spot.stop(instance_id)
        client.spot.delete(instance_id, missing_ok=True)
        client.instances.delete(instance_id, missing_ok=True)

    def get(self, client: DumontClient, remote_id: str) -> SpotInstance:
        found = find(client, remote_id)
        if found is None:
            raise NotFoundError(
                f"spot deployment {remote_id} not found",
                "see `dumont spot list`",
                status_code=404,
            )
        return found


def make_ops(services: KindServices) -> KindOps[SpotInstance]:
    return SpotDeploymentOps()
