"""`instance.*` through the API: list, race for a machine, pause/resume, install models, delete.

`kinds.instance` holds the decisions; this module the calls. The race itself is the wizard's
(`dumont_plan.wizard.run_race`, imported when an instance is created). Models are installed by
the `model_installer` of the `KindServices` the caller of apply passes (the CLI: Ollama's
puller, as `dumont model install`); without one a model change fails with a hint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dumont_plan.client import DumontClient
from dumont_plan.errors import ApplyError, NotFoundError
from dumont_plan.kinds.instance import InstanceHandler
from dumont_plan.kinds.ops import KindOps, KindServices, ModelInstaller
from dumont_plan.wire_models import Instance, WireModel


class InstanceOps:
    kind = "instance"

    def __init__(self, handler: InstanceHandler, model_installer: ModelInstaller | None) -> None:
        self.handler = handler
        self.model_installer = model_installer

    def list_live(self, client: DumontClient) -> list[Instance]:
        return client.instances.list_all()

    def create(self, client: DumontClient, body: dict[str, Any], idempotency_key: str) -> Instance:
        """Race for a machine; pause it when `state: paused`; install the models."""
        from dumont_plan.wizard import run_race

        request = self.handler.wizard_request(body, idempotency_prefix=idempotency_key)
        live = run_race(client, request).winner
        if body.get("state") == "paused":
            client.instances.pause(live.id)
            live = client.instances.get(live.id)
        elif body.get("models"):
            self.install_models(client, live, list(body["models"]))
        return live

    def update(
        self,
        client: DumontClient,
        remote_id: str,
        values: dict[str, Any],
        changed: Sequence[str],
    ) -> Instance | None:
        """Pause or resume for `state`, install new `models`; label/max_price are recorded."""
        if "state" in changed:
            if values.get("state") == "paused":
                client.instances.pause(remote_id)
            else:
                client.instances.resume(remote_id)
        live = client.instances.get(remote_id)
        if "models" in changed and values.get("models") and values.get("state") != "paused":
            self.install_models(client, live, list(values["models"]))
        return live

    def install_models(self, client: DumontClient, live: Instance, models: list[str]) -> None:
        if not models:
            return
        if self.model_installer is None:
            raise ApplyError(
                f"cannot install models {', '.join(models)} on instance {live.id}: "
                "no model installer is available",
                f"run `dumont model install {live.id} MODEL` for each model",
            )
        for model in models:
            self.model_installer(client, live, model)

    def delete(self, client: DumontClient, remote_id: str, live: WireModel | None = None) -> None:
        try:
            client.instances.delete(remote_id, missing_ok=True)
        except NotFoundError:
            return

    def get(self, client: DumontClient, remote_id: str) -> Instance:
        return client.instances.get(remote_id)


def make_ops(services: KindServices) -> KindOps[Instance]:
    return InstanceOps(InstanceHandler(), services.model_installer)
