"""The API side of a kind: `KindOps`, what observe and apply call, and how it is found.

    ops = load_ops(KindServices(model_installer=...))     # kind -> KindOps, for one apply
    ops["job"].list_live(client)                           # observe: few paged list calls
    ops["job"].create(client, body, idempotency_key)      # apply, per change (engine.py)

Each kind's ops live in `kinds/<kind>_ops.py`, named by the kind's line in
`kinds.registry.REGISTRY`, and are loaded here by that name: the pure registry (read by the
planner) never imports the client. Each ops module ends with `def make_ops(services) ->
KindOps`, so mypy checks its class against this Protocol there. Whatever the ops need from
outside (the Ollama model installer of the CLI) comes in `KindServices`.

Hooks `apply` uses, per action of a `ResourceChange`:

    create, run        ops.create(client, body, idempotency_key) -> live object
    replace            ops.delete(client, old_id, live) then ops.create(...)
    update/pause/resume ops.update(client, remote_id, values, changed_fields) -> live | None
    delete             ops.delete(client, remote_id, live)   (a job: cancel if still active)
    adopt / forget     ledger only, no API call
    wait               wait_for(fetch=lambda: ops.get(client, id),
                                done=lambda o: handler.wait_done(o, target),
                                failed=handler.is_failed)

`body` comes from `apply.resolve.resolve_body` (references and secrets filled in just before
the request; the values are never stored).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeAlias, TypeVar

from dumont_plan.client import DumontClient
from dumont_plan.kinds.registry import REGISTRY
from dumont_plan.wire_models import Instance, WireModel

# Installs one model on a running instance: (client, live instance, model name).
ModelInstaller = Callable[[DumontClient, Instance, str], None]
Live_co = TypeVar("Live_co", bound=WireModel, covariant=True)


@dataclass(frozen=True)
class KindServices:
    """What the ops of a kind may need beyond the client, injected by the caller of apply."""

    # `instances.*.models`: None makes a model change fail with a hint (`dumont model install`).
    model_installer: ModelInstaller | None = None
    # The stack's root (the first spec file's folder): local files the spec names (a
    # fine-tune's dataset) are relative to it. None: the current directory.
    spec_root: Path | None = None


class KindOps(Protocol[Live_co]):
    """The API calls of one kind (observe and apply only; the plan never calls these).

    Generic in the kind's live object (`KindOps[Job]`), which its handler reads."""

    @property
    def kind(self) -> str:
        """The address prefix, as its handler's."""
        ...

    def list_live(self, client: DumontClient) -> Sequence[Live_co]:
        """Every live object of this kind with few paged list calls (never one GET each)."""
        ...

    def create(self, client: DumontClient, body: dict[str, Any], idempotency_key: str) -> Live_co:
        """Create it (an API call that is never retried); the live object it made."""
        ...

    def update(
        self,
        client: DumontClient,
        remote_id: str,
        values: dict[str, Any],
        changed: Sequence[str],
    ) -> Live_co | None:
        """Change `changed` in place; the live object after it (None: nothing to report)."""
        ...

    def delete(self, client: DumontClient, remote_id: str, live: WireModel | None = None) -> None:
        """Remove (or stop) it; an object already gone is not an error."""
        ...

    def get(self, client: DumontClient, remote_id: str) -> Live_co: ...


RegisteredOps: TypeAlias = KindOps[
    WireModel
]  # any kind's ops (KindOps is covariant in its objects)
OpsFactory = Callable[[KindServices], RegisteredOps]


def load_ops(
    services: KindServices | None = None, kinds: Collection[str] | None = None
) -> dict[str, RegisteredOps]:
    """Every registered kind's ops (or only those of `kinds`), by address prefix, built with
    `services`. Observe passes the kinds it reads: a plan of jobs never imports another
    kind's ops module."""
    services = services or KindServices()
    out: dict[str, RegisteredOps] = {}
    for entry in REGISTRY:
        if kinds is not None and entry.handler.kind not in kinds:
            continue
        factory: OpsFactory = importlib.import_module(entry.ops).make_ops
        ops = factory(services)
        if ops.kind != entry.handler.kind:
            raise TypeError(f"{entry.ops}.make_ops made the ops of {ops.kind!r}")
        out[ops.kind] = ops
    return out
