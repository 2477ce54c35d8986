"""`serverless_endpoint.*` through the API (`client.endpoints`): list, create, update the
scaling in place, delete (`kinds.serverless_endpoint` holds the decisions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dumont_plan.client import DumontClient
from dumont_plan.errors import NotFoundError
from dumont_plan.kinds.ops import KindOps, KindServices
from dumont_plan.kinds.serverless_endpoint import UPDATABLE
from dumont_plan.wire_models import WireModel
from dumont_plan.wire_models.endpoint import ServerlessEndpoint

WHERE = "/api/v1/serverless/endpoints"


class ServerlessEndpointOps:
    kind = "serverless_endpoint"

    def list_live(self, client: DumontClient) -> list[ServerlessEndpoint]:
        """The caller's endpoints (one call: the API lists them unpaged)."""
        return ServerlessEndpoint.list_from_wire(client.endpoints.list(), f"GET {WHERE}")

    def create(
        self, client: DumontClient, body: dict[str, Any], idempotency_key: str
    ) -> ServerlessEndpoint:
        return ServerlessEndpoint.from_wire(client.endpoints.create(**body), f"POST {WHERE}")

    def update(
        self,
        client: DumontClient,
        remote_id: str,
        values: dict[str, Any],
        changed: Sequence[str],
    ) -> ServerlessEndpoint | None:
        """`PUT` the scaling fields (every one the spec sets: the API keeps the others)."""
        body = {k: values[k] for k in UPDATABLE if values.get(k) is not None}
        if not body:
            return None
        answer = client.endpoints.update(remote_id, **body)
        return ServerlessEndpoint.from_wire(answer, f"PUT {WHERE}/{remote_id}")

    def delete(self, client: DumontClient, remote_id: str, live: WireModel | None = None) -> None:
        """Delete (its workers stop); an endpoint already gone is fine."""
        try:
            client.endpoints.delete(remote_id)
        except NotFoundError:
            return

    def get(self, client: DumontClient, remote_id: str) -> ServerlessEndpoint:
        return ServerlessEndpoint.from_wire(
            client.endpoints.get(remote_id), f"GET {WHERE}/{remote_id}"
        )


def make_ops(services: KindServices) -> KindOps[ServerlessEndpoint]:
    return ServerlessEndpointOps()
