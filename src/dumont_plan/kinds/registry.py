"""Every kind dumont manages, by address prefix: `HANDLERS["job"]`, `handler_for("instance")`."""

from __future__ import annotations

from dumont_plan.errors import PlanError
from dumont_plan.kinds.base import BaseHandler
from dumont_plan.kinds.instance import InstanceHandler
from dumont_plan.kinds.job import JobHandler

HANDLERS: dict[str, BaseHandler] = {
    handler.kind: handler for handler in (JobHandler(), InstanceHandler())
}
SECTIONS: dict[str, str] = {handler.section: kind for kind, handler in HANDLERS.items()}


def handler_for(kind: str) -> BaseHandler:
    """The handler of an address prefix (`job`) or a spec section (`jobs`)."""
    key = SECTIONS.get(kind, kind)
    handler = HANDLERS.get(key)
    if handler is None:
        raise PlanError(f"unknown kind {kind!r}", f"use one of: {', '.join(sorted(HANDLERS))}")
    return handler
