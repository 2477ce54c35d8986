"""Every kind dumont manages: one line each, naming its pure handler and its ops module.

    HANDLERS["job"], handler_for("instance")        pure: what plan/ reads (no client)
    kinds.ops.load_ops(services)["job"]             its API calls (observe, apply)

The ops module is named, not imported, so that importing the planner never loads the client.
"""

from __future__ import annotations

from dataclasses import dataclass

from dumont_plan.errors import PlanError
from dumont_plan.kinds.base import RegisteredHandler
from dumont_plan.kinds.finetune import FinetuneHandler
from dumont_plan.kinds.instance import InstanceHandler
from dumont_plan.kinds.job import JobHandler
from dumont_plan.kinds.serverless import ServerlessHandler
from dumont_plan.kinds.serverless_endpoint import ServerlessEndpointHandler
from dumont_plan.kinds.spot_deployment import SpotDeploymentHandler
from dumont_plan.kinds.spot_template import SpotTemplateHandler


@dataclass(frozen=True)
class Registration:
    handler: RegisteredHandler  # the pure side
    ops: str  # the module of its `make_ops(services) -> KindOps` (kinds/ops.py)


REGISTRY: tuple[Registration, ...] = (
    Registration(JobHandler(), ops="dumont_plan.kinds.job_ops"),
    Registration(InstanceHandler(), ops="dumont_plan.kinds.instance_ops"),
    Registration(ServerlessHandler(), ops="dumont_plan.kinds.serverless_ops"),
    Registration(SpotTemplateHandler(), ops="dumont_plan.kinds.spot_template_ops"),
    Registration(SpotDeploymentHandler(), ops="dumont_plan.kinds.spot_deployment_ops"),
    Registration(FinetuneHandler(), ops="dumont_plan.kinds.finetune_ops"),
    Registration(ServerlessEndpointHandler(), ops="dumont_plan.kinds.serverless_endpoint_ops"),
)

HANDLERS: dict[str, RegisteredHandler] = {entry.handler.kind: entry.handler for entry in REGISTRY}
SECTIONS: dict[str, str] = {handler.section: kind for kind, handler in HANDLERS.items()}


def handler_for(kind: str) -> RegisteredHandler:
    """The handler of an address prefix (`job`) or a spec section (`jobs`)."""
    key = SECTIONS.get(kind, kind)
    handler = HANDLERS.get(key)
    if handler is None:
        raise PlanError(f"unknown kind {kind!r}", f"use one of: {', '.join(sorted(HANDLERS))}")
    return handler
