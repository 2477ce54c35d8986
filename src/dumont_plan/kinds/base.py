"""The one small interface every kind implements."""

from __future__ import annotations

from enum import Enum
from typing import Any, Protocol

from pydantic import BaseModel

from dumont_plan.client import DumontClient


class FieldClass(Enum):
    updatable = "updatable"  # changed in place (update)
    replace = "replace"  # immutable: a change replaces the resource
    server_default = "server_default"  # absent from the spec: the live value is ignored
    output = "output"  # set by the server; never diffed
    secret = "secret"  # compared by salted hash, never shown
    control = "control"  # dumont's own (run_policy, wait, lifecycle, depends_on): not sent


class KindHandler(Protocol):
    """What the engine needs to know and do for one kind."""

    kind: str  # address prefix: "job"
    section: str  # spec section: "jobs"
    spec_model: type[BaseModel]
    fields: dict[str, FieldClass]  # the per-kind table printed by `dumont explain`

    def remote_name(self, project: str, name: str) -> str:
        """The name the object carries on the server (used to adopt after a crash)."""
        ...

    def list_live(self, client: DumontClient) -> list[dict[str, Any]]:
        """Every live object of this kind with few paged list calls (never one GET each)."""
        ...

    def live_id(self, live: dict[str, Any]) -> str: ...

    def live_name(self, live: dict[str, Any]) -> str | None: ...

    def status(self, live: dict[str, Any]) -> str:
        """The lifecycle status, normalised (e.g. instances: running | paused | loading ...)."""
        ...

    def is_finished(self, live: dict[str, Any]) -> bool: ...

    def is_failed(self, live: dict[str, Any]) -> bool: ...

    def request_body(self, project: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """The create request for a resolved spec (references and secrets already filled)."""
        ...

    def create(
        self, client: DumontClient, body: dict[str, Any], idempotency_key: str
    ) -> dict[str, Any]: ...

    def delete(self, client: DumontClient, remote_id: str) -> None: ...

    def get(self, client: DumontClient, remote_id: str) -> dict[str, Any]: ...

    def hourly_price(self, spec: dict[str, Any], offers: Any) -> float | None: ...
