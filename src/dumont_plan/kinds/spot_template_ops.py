"""`spot_template.*` through the API: list, snapshot an instance, delete (`kinds.spot_template`
holds the decisions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dumont_plan.client import DumontClient
from dumont_plan.errors import NotFoundError
from dumont_plan.kinds.ops import KindOps, KindServices
from dumont_plan.wire_models import WireModel
from dumont_plan.wire_models.spot import SpotTemplate


class SpotTemplateOps:
    kind = "spot_template"

    def list_live(self, client: DumontClient) -> list[SpotTemplate]:
        return client.spot.templates()

    def create(
        self, client: DumontClient, body: dict[str, Any], idempotency_key: str
    ) -> SpotTemplate:
        """Snapshot the instance's workspace; the template as the list shows it (the create
        answer lacks the instance id and the time)."""
        made = client.spot.create_template(
            body["instance"],
            region=body.get("region"),
            workspace_path=body.get("workspace_path"),
            idempotency_key=idempotency_key,
        )
        try:
            return client.spot.template(made.template_id)
        except NotFoundError:
            return made

    def update(
        self,
        client: DumontClient,
        remote_id: str,
        values: dict[str, Any],
        changed: Sequence[str],
    ) -> SpotTemplate | None:
        """Templates change nothing in place: an update only records lifecycle settings."""
        return None

    def delete(self, client: DumontClient, remote_id: str, live: WireModel | None = None) -> None:
        client.spot.delete_template(remote_id, missing_ok=True)

    def get(self, client: DumontClient, remote_id: str) -> SpotTemplate:
        return client.spot.template(remote_id)


def make_ops(services: KindServices) -> KindOps[SpotTemplate]:
    return SpotTemplateOps()
