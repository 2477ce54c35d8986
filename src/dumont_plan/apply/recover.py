"""Finishing what an interrupted apply started (after a crash or a kill), and adoption.

The plan adopts an object it finds by its remote name when the ledger has no id for the
address (an apply died between the create request and the ledger write, or the state file was
lost). `adopt` records it; after an interrupted create (a pending create/run/replace in the
journal) it also finishes that create:

- a wizard race killed midway leaves its whole batch of machines under one label: the best is
  kept (not failed, running, newest) and the others are deleted before the adoption is
  recorded, so a crash in between makes the same choice again;
- the updatable fields the create had not set yet are set (an instance meant to be paused);
- the wait the create would have done is done; a machine that never boots is deleted and the
  create starts over (a job that failed is its result: that is exit 5, as for a create).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dumont_plan.apply.base import crash_point
from dumont_plan.apply.resolve import Resolved
from dumont_plan.errors import ApplyError, WaitFailedError
from dumont_plan.kinds.base import FieldClass, RegisteredHandler
from dumont_plan.plan.model import Action, ResourceChange
from dumont_plan.spec.stack import Resource
from dumont_plan.wire_models import WireModel

if TYPE_CHECKING:
    from dumont_plan.apply.engine import Applier


def adopt(
    app: Applier, handler: RegisteredHandler, change: ResourceChange, resource: Resource
) -> str:
    """Record an object the plan found by name. After an interrupted create, finish it.

    An interrupted create (a pending create/run/replace in the journal) may have left more
    than the adopted object, or a broken one, or stopped before its last step: its
    leftovers are deleted, the best object kept (running, else booting, newest), the
    state it was being brought to is set (a paused instance), and the wait the create
    would have done is done. When nothing it made is usable, it starts over.
    """
    if change.remote_id is None:
        raise ApplyError(f"{change.address}: nothing to adopt (no remote id in the plan)")
    resolved = app.prepare(resource)
    pending = app.ledger.state.pending_for(change.address)
    interrupted = any(op.action in ("create", "run", "replace") for op in pending)
    remote_id = change.remote_id
    live = observed_object(app, handler, change.kind, remote_id)
    if interrupted:
        names = {op.remote_name for op in pending}
        live = keep_best(app, handler, change, names, live)
        if live is None:
            return start_over(app, handler, change, resource)
        remote_id = handler.live_id(live)
        finish_interrupted(app, handler, remote_id, live, resolved)
    app.ledger.record(
        change.address,
        kind=change.kind,
        remote_id=remote_id,
        remote_name=change.remote_name,
        record=resolved.record,
        run=interrupted,
    )
    crash_point()
    if live is not None:
        app.set_outputs(change.address, handler, live)
    if interrupted:
        try:
            app.wait(handler, change, resource, remote_id)
        except WaitFailedError:
            if handler.runs_to_completion:
                raise  # a failed job is its result, not a broken machine
            app.ops[handler.kind].delete(app.client, remote_id, None)
            return start_over(app, handler, change, resource)
    return remote_id


def observed_object(
    app: Applier, handler: RegisteredHandler, kind: str, remote_id: str
) -> WireModel | None:
    return next((o for o in app.observed.objects(kind) if handler.live_id(o) == remote_id), None)


def keep_best(
    app: Applier,
    handler: RegisteredHandler,
    change: ResourceChange,
    names: set[str | None],
    planned: WireModel | None,
) -> WireModel | None:
    """Keep the best object an interrupted create made; delete the others it left.

    A wizard race killed midway leaves its whole batch of machines under one label, no
    address owns them and they still run. The kept one: not failed, running, newest.
    None when every one of them failed (they are all deleted then).
    """
    names = {n for n in (*names, change.remote_name) if n}
    claimed = app.ledger.state.claimed(change.kind)
    found = [
        o
        for o in app.observed.objects(change.kind)
        if handler.live_id(o) not in claimed and handler.live_name(o) in names
    ]
    if planned is not None and all(handler.live_id(o) != change.remote_id for o in found):
        found.append(planned)
    if not found:
        return None

    def rank(live: WireModel) -> tuple[bool, bool, str, str]:
        return (
            not handler.is_failed(live),
            handler.wait_done(live, "running"),
            handler.live_created(live),
            handler.live_id(live),
        )

    best = max(found, key=rank)
    broken = handler.is_failed(best) and not handler.is_finished(best)
    for live in found:
        if (live is not best or broken) and handler.needs_delete(live):
            remote_id = handler.live_id(live)
            app.ops[handler.kind].delete(app.client, remote_id, live)
            with app.lock:
                extra = app.extra.setdefault(change.address, {})
                extra.setdefault("deleted_leftovers", []).append(remote_id)
    return None if broken else best


def finish_interrupted(
    app: Applier, handler: RegisteredHandler, remote_id: str, live: WireModel, resolved: Resolved
) -> None:
    """Set the updatable fields the interrupted create had not set yet (e.g. paused)."""
    fields = [
        name
        for name, value in handler.live_values(live).items()
        if handler.fields.get(name) is FieldClass.updatable
        and name in resolved.values
        and handler.normalize(name, value) != handler.normalize(name, resolved.values[name])
    ]
    if fields:
        app.ops[handler.kind].update(app.client, remote_id, resolved.values, fields)


def start_over(
    app: Applier, handler: RegisteredHandler, change: ResourceChange, resource: Resource
) -> str:
    """Nothing an interrupted create made is usable: create it afresh, and wait."""
    fresh = change.model_copy(update={"action": Action.create, "remote_id": None})
    remote_id = app.create(handler, fresh, resource, new_key=True)
    app.wait(handler, fresh, resource, remote_id)
    return remote_id
