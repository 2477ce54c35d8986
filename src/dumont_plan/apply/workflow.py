"""The declarative commands as library calls: plan, apply and destroy a stack; refresh, import.

    planned = plan_stack(client, stack, ledger, PlanOptions(targets=["job.train"]))
    check_errors(planned.plan)             # PlanError (exit 1): every plan error
    check_policy(planned.plan)             # PolicyError (exit 6): the cost gate

    applied = apply_stack(connect, stack, state, PlanOptions(),
                          show_plan=draw, confirm=ask, on_event=progress)
    applied.refused / applied.result       # None when nothing ran; else an ApplyResult

apply_stack's steps, in order: lock the state (a second writer stops with the holder), load
it, `connect()` for a client, observe and plan (or check a saved plan against what is live now:
StalePlanError, exit 7), raise plan errors, `show_plan(plan)`, raise the cost gate, stop when
nothing changes, ask `confirm(plan)` (a saved plan is never asked: it was reviewed when saved),
carry the changes out (apply_plan), release the client and the lock. `destroy_stack` is the
same with a destroy plan.

Interaction is injected and nothing here prints or reads a terminal: `show_plan` draws the
plan, `confirm` answers yes or no, `on_event` receives every ApplyEvent — a sink, or a context
manager yielding one, entered only while the changes run (a live display must not cover the
plan or the question). Errors are DumontErrors with their exit codes (errors.py).

The plan half (plan_stack, check_errors, check_policy, live_statuses, secret hashes) lives in
plan_flow.py, which `dumont plan` imports alone (no apply engine); its names are re-exported
here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dumont_plan.apply.base import ApplyResult
from dumont_plan.apply.engine import apply_plan
from dumont_plan.apply.events import EventSink, Redactor
from dumont_plan.apply.observe import kinds_of, observe
from dumont_plan.apply.plan_flow import (
    Planned,
    check_errors,
    check_policy,
    live_statuses,
    observe_and_plan,
    plan_stack,
    secret_hashes,
    with_secret_hashes,
)
from dumont_plan.apply.resolve import outputs_from
from dumont_plan.client import DumontClient
from dumont_plan.errors import DumontError, NotFoundError
from dumont_plan.kinds.ops import KindServices, load_ops
from dumont_plan.kinds.registry import HANDLERS, handler_for
from dumont_plan.plan.fingerprint import desired_record
from dumont_plan.plan.model import UNKNOWN, Observed, Plan
from dumont_plan.plan.select import PlanOptions
from dumont_plan.secrets import SecretStore, default_secrets_files
from dumont_plan.spec.refs import Ref, parse_address
from dumont_plan.spec.stack import Stack
from dumont_plan.state.backend import LocalBackend, StateBackend
from dumont_plan.state.ledger import Ledger
from dumont_plan.state.planfile import check_plan_file

__all__ = [
    "Applied",
    "ApplySettings",
    "Imported",
    "Planned",
    "Refreshed",
    "apply_stack",
    "check_errors",
    "check_policy",
    "destroy_stack",
    "import_resource",
    "live_statuses",
    "plan_stack",
    "refresh_state",
    "secret_hashes",
    "with_secret_hashes",
]

Connect = Callable[[], DumontClient]
Progress = EventSink | AbstractContextManager[EventSink]
# Where the state lives: a state file's path (the local backend) or a backend.
StateRef = Path | StateBackend


def backend_of(state: StateRef) -> StateBackend:
    return LocalBackend(state) if isinstance(state, Path) else state


@dataclass(frozen=True)
class ApplySettings:
    """How the changes are carried out (the apply_plan arguments that are not the plan)."""

    parallelism: int = 8
    wait: str | None = None  # none | running | completed: overrides every resource's `wait:`
    wait_timeout: float | None = None  # seconds a wait may take (exit 4 when it elapses)
    logs: bool = False  # stream the logs of the jobs waited for (as `log` events)


@dataclass
class Applied:
    """What apply_stack did: the plan, and the apply's result when changes ran."""

    plan: Plan
    result: ApplyResult | None = None  # None: nothing to do, or refused
    refused: bool = False  # `confirm` said no: nothing was changed

    @property
    def exit_code(self) -> int:
        return 0 if self.result is None else self.result.exit_code


# -- apply and destroy ------------------------------------------------------------------------


def apply_stack(
    connect: Connect,
    stack: Stack,
    state: StateRef,
    options: PlanOptions | None = None,
    *,
    saved: Plan | None = None,
    settings: ApplySettings | None = None,
    show_plan: Callable[[Plan], None] | None = None,
    confirm: Callable[[Plan], bool] | None = None,
    on_event: Progress | None = None,
    events_when_empty: bool = False,
    secrets: SecretStore | None = None,
    redactor: Redactor | None = None,
    services: KindServices | None = None,
) -> Applied:
    """Lock, plan (or check `saved`), confirm, apply, unlock: see the module doc.

    `connect` is called once the lock is held; the client it returns is closed here.
    `confirm=None` approves without asking (`-y`). `events_when_empty` runs the (empty) apply
    anyway so an event stream always has its apply_start and apply_done. `services` is what
    the kinds' API calls need besides the client (the CLI's Ollama model installer).
    Raises LockError, StalePlanError (exit 7), PlanError, PolicyError (exit 6) before any
    change; a failed change is in the result, not raised.
    """
    options = options or PlanOptions()
    settings = settings or ApplySettings()
    command = "dumont destroy" if options.destroy else "dumont apply"
    with backend_of(state).locked(stack.project, command=command) as ledger:
        options = with_secret_hashes(options, stack, ledger, secrets)
        client = connect()
        try:
            allow_restart = options.allow_restart
            if saved is not None:
                observed = observe(client, kinds_of(stack, ledger.state), ledger=ledger.state)
                check_plan_file(saved, stack, observed, ledger.state)
                allow_restart = allow_restart or bool(saved.options.get("allow_restart"))
                plan = saved
            else:
                plan, observed = observe_and_plan(client, stack, ledger, options)
            check_errors(plan)
            if show_plan is not None:
                show_plan(plan)
            check_policy(plan)
            if not plan.has_changes and not plan.blocked and not events_when_empty:
                return Applied(plan)
            if saved is None and plan.has_changes and confirm is not None and not confirm(plan):
                return Applied(plan, refused=True)
            with _entered(on_event) as sink:
                result = apply_plan(
                    plan,
                    stack,
                    client,
                    ledger,
                    parallelism=settings.parallelism,
                    wait_default=settings.wait,
                    wait_timeout=settings.wait_timeout,
                    logs=settings.logs,
                    on_event=sink,
                    allow_restart=allow_restart,
                    observed=observed,
                    secrets=secrets or SecretStore(os.environ, default_secrets_files(stack.root)),
                    redactor=redactor,
                    services=services,
                )
        finally:
            client.close()
    return Applied(plan, result)


def destroy_stack(
    connect: Connect,
    stack: Stack,
    state: StateRef,
    options: PlanOptions | None = None,
    *,
    parallelism: int = 8,
    show_plan: Callable[[Plan], None] | None = None,
    confirm: Callable[[Plan], bool] | None = None,
    on_event: Progress | None = None,
    events_when_empty: bool = False,
    redactor: Redactor | None = None,
    services: KindServices | None = None,
) -> Applied:
    """apply_stack with a destroy plan (of `options.targets`, else everything), waiting for
    nothing: running jobs are cancelled, instances deleted; `prevent_destroy` stops it whole."""
    options = dataclasses.replace(options or PlanOptions(), destroy=True)
    return apply_stack(
        connect,
        stack,
        state,
        options,
        settings=ApplySettings(parallelism=parallelism, wait="none"),
        show_plan=show_plan,
        confirm=confirm,
        on_event=on_event,
        events_when_empty=events_when_empty,
        redactor=redactor,
        services=services,
    )


@contextlib.contextmanager
def _entered(on_event: Progress | None) -> Iterator[EventSink | None]:
    if isinstance(on_event, AbstractContextManager):
        with on_event as sink:
            yield sink
    else:
        yield on_event


# -- the state beside the live objects --------------------------------------------------------


@dataclass
class Refreshed:
    """The refreshed ledger, each address's live status and the addresses gone."""

    ledger: Ledger
    statuses: dict[str, str] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)


def forget_stale_creates(client: DumontClient, ledger: Ledger) -> None:
    """Drop the journal's interrupted creates that left nothing: no live object of their kind
    carries their remote name (what `plan` would adopt). A job list that may be incomplete
    (a server that ignores `offset`) proves nothing: those stay."""
    creates = [op for op in ledger.state.pending if op.action in ("create", "run", "replace")]
    kinds = sorted({op.kind for op in creates if op.kind in HANDLERS})
    if not kinds:
        return
    observed = observe(client, kinds)
    for op in creates:
        if op.kind not in kinds or (op.kind == "job" and not client.jobs.complete):
            continue
        handler = HANDLERS[op.kind]
        names = {handler.live_name(live) for live in observed.objects(op.kind)}
        if op.remote_name not in names:
            ledger.fail_op(op)


def refresh_state(connect: Connect, state: StateRef) -> Refreshed:
    """Record each managed object's live status in the state; "gone" for those not found.

    Without a state file nothing is read or written (`ledger.exists` is False)."""
    with backend_of(state).locked(None, command="dumont refresh") as ledger:
        if not ledger.exists:
            return Refreshed(ledger)
        client = connect()
        try:
            statuses = live_statuses(client, ledger)
            forget_stale_creates(client, ledger)
        finally:
            client.close()
        gone = []
        for address in sorted(ledger.state.resources):
            status = statuses.get(address, "gone")
            if status == "gone":
                gone.append(address)
            ledger.mark_status(address, status)
        ledger.save()
    return Refreshed(ledger, statuses, gone)


@dataclass(frozen=True)
class Imported:
    address: str
    kind: str
    remote_id: str
    status: str


def import_resource(
    connect: Connect,
    stack: Stack,
    state: StateRef,
    address: str,
    remote_id: str,
    *,
    secrets: SecretStore | None = None,
) -> Imported:
    """Manage the live object `remote_id` as `address` (declared in the spec) from now on.

    The state records it with the spec's values as applied, so the next plan shows how the
    object differs from the spec. Refused: an address not in the spec or already managed, an
    object managed under another address, an id the server does not know."""
    try:
        address = parse_address(address)
    except ValueError as exc:
        raise DumontError(f"import {address}: {exc}") from exc
    resource = stack.resources.get(address)
    if resource is None:
        raise DumontError(
            f"import {address}: it is not in the spec",
            f"declare it first (e.g. under {address.split('.')[0]}s:), then import",
        )
    handler = handler_for(resource.kind)
    with backend_of(state).locked(stack.project, command="dumont import") as ledger:
        if address in ledger.state.resources:
            raise DumontError(
                f"import {address}: it is already managed (id "
                f"{ledger.state.resources[address].remote_id})",
                f"`dumont state rm {address}` first to import another object",
            )
        owner = next(
            (
                a
                for a, e in ledger.state.resources.items()
                if e.kind == resource.kind and e.remote_id == remote_id
            ),
            None,
        )
        if owner is not None:
            raise DumontError(f"import {address}: {remote_id} is already managed as {owner}")
        client = connect()
        try:
            live = load_ops()[handler.kind].get(client, remote_id)
        except NotFoundError as exc:
            raise DumontError(
                f"import {address}: no {handler.kind} {remote_id} on the server",
                f"`dumont {handler.kind} list` shows the ids",
            ) from exc
        finally:
            client.close()
        outputs = outputs_from(ledger.state, Observed())
        hashes = secret_hashes(stack, ledger.state.salt, secrets)

        def resolve(ref: Ref) -> Any:
            value = outputs.get(ref.address, {}).get(ref.attr or "id")
            return UNKNOWN if value is None else value

        record = desired_record(
            handler,
            resource,
            stack.project,
            resolve=resolve,
            secret_hash=lambda name: hashes.get(name, "missing"),
            salt=ledger.state.salt,
        )
        status = handler.status(live)
        ledger.record(
            address,
            kind=resource.kind,
            remote_id=handler.live_id(live),
            remote_name=handler.live_name(live),
            record=record,
            status=status,
        )
    return Imported(address, handler.kind, remote_id, status)
