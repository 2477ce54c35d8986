"""`serverless.*` through the API: enable (an upsert: create and update), disable, status.

`kinds.serverless` holds the decisions; this module the calls. The body is the handler's
`request_body` (`instance_id` plus the enable fields); it holds the webhook secret's value,
which is sent and never logged or stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dumont_plan.client import DumontClient
from dumont_plan.errors import ApplyError
from dumont_plan.kinds.ops import KindOps, KindServices
from dumont_plan.kinds.serverless import ServerlessHandler
from dumont_plan.wire_models import ServerlessPolicy, WireModel


class ServerlessOps:
    kind = "serverless"

    def __init__(self, handler: ServerlessHandler) -> None:
        self.handler = handler

    def list_live(self, client: DumontClient) -> list[ServerlessPolicy]:
        return client.serverless.list()

    def _enable(self, client: DumontClient, body: dict[str, Any]) -> ServerlessPolicy:
        fields = dict(body)
        instance = fields.pop("instance_id", None)
        if isinstance(instance, bool) or not isinstance(instance, int | str):
            raise ApplyError(
                f"serverless: no instance id to enable ({instance!r})",
                "write instance: ${instance.NAME.id}",
            )
        client.serverless.enable(instance, **fields)
        return client.serverless.status(instance)

    def create(
        self, client: DumontClient, body: dict[str, Any], idempotency_key: str
    ) -> ServerlessPolicy:
        """Enable the policy (an upsert: after a lost answer, enabling again is harmless)."""
        return self._enable(client, body)

    def update(
        self,
        client: DumontClient,
        remote_id: str,
        values: dict[str, Any],
        changed: Sequence[str],
    ) -> ServerlessPolicy | None:
        """Enable again with the whole policy (the API replaces it)."""
        body = self.handler.request_body("", "", values)
        body["instance_id"] = remote_id
        return self._enable(client, body)

    def delete(self, client: DumontClient, remote_id: str, live: WireModel | None = None) -> None:
        """Disable (the server resumes a paused instance first); already gone is fine."""
        client.serverless.disable(remote_id, missing_ok=True)

    def get(self, client: DumontClient, remote_id: str) -> ServerlessPolicy:
        return client.serverless.status(remote_id)


def make_ops(services: KindServices) -> KindOps[ServerlessPolicy]:
    return ServerlessOps(ServerlessHandler())
