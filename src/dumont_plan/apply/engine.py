"""The apply engine: runs a Plan's changes over the DAG scheduler and journals each one.

See the package docstring (`dumont_plan.apply`) for the order of requests and ledger writes.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import uuid
from typing import Any

from dumont_plan.apply.base import WAIT_TARGETS, ApplyResult, crash_point
from dumont_plan.apply.events import ApplyEvent, EventSink, Redactor
from dumont_plan.apply.recover import adopt
from dumont_plan.apply.resolve import Resolved, outputs_from, resolve_body
from dumont_plan.apply.scheduler import run_dag
from dumont_plan.apply.waits import wait_resource
from dumont_plan.client import DumontClient
from dumont_plan.errors import (
    ApiError,
    ApplyError,
    ApplyInterrupted,
    ConnectError,
    DumontError,
    ServerError,
    WaitFailedError,
    WaitTimeoutError,
)
from dumont_plan.kinds.base import RegisteredHandler, id_value
from dumont_plan.kinds.ops import KindServices, load_ops
from dumont_plan.kinds.registry import HANDLERS
from dumont_plan.plan.model import Action, Observed, Plan, ResourceChange
from dumont_plan.secrets import SecretStore, default_secrets_files
from dumont_plan.spec.stack import Resource, Stack
from dumont_plan.state.ledger import Ledger
from dumont_plan.wire_models import WireModel

STARTS_WAIT = frozenset({Action.create, Action.run, Action.replace, Action.resume})


def apply_plan(
    plan: Plan,
    stack: Stack,
    client: DumontClient,
    ledger: Ledger,
    *,
    parallelism: int = 8,
    wait_default: str | None = None,
    wait_timeout: float | None = None,
    logs: bool = False,
    on_event: EventSink | None = None,
    allow_restart: bool = False,
    observed: Observed | None = None,
    secrets: SecretStore | None = None,
    redactor: Redactor | None = None,
    poll: float = 1.0,
    services: KindServices | None = None,
) -> ApplyResult:
    """Carry out `plan` (see the module doc). Never raises for a failed change: see the result.

    `wait_default` overrides every resource's `wait:` (`none`, `running`, `completed`);
    `observed` (what the plan was built from) supplies the attributes of untouched resources
    for references; `secrets` defaults to the environment and the secrets files of the stack;
    `allow_restart` is re-checked here for a saved plan's replace of an active job;
    `services` is what the kinds' API calls need besides the client (the model installer).
    """
    if wait_default is not None and wait_default not in WAIT_TARGETS:
        raise ApplyError(
            f"--wait {wait_default!r} is not a wait target", "use none, running or completed"
        )
    if plan.errors:
        raise ApplyError("the plan has errors: " + "; ".join(plan.errors), "fix them and re-plan")
    applier = Applier(
        plan=plan,
        stack=stack,
        client=client,
        ledger=ledger,
        wait_default=wait_default,
        wait_timeout=wait_timeout,
        logs=logs,
        emit=on_event or (lambda event: None),
        allow_restart=allow_restart,
        observed=observed or Observed(),
        secrets=secrets or SecretStore(os.environ, default_secrets_files(stack.root)),
        redact=redactor or Redactor(),
        poll=poll,
        services=with_root(services or KindServices(), stack),
    )
    return applier.run(parallelism)


def with_root(services: KindServices, stack: Stack) -> KindServices:
    """`services` knowing the stack's root (where a fine-tune's local dataset is)."""
    if services.spec_root is not None:
        return services
    return dataclasses.replace(services, spec_root=stack.root)


class Applier:
    def __init__(
        self,
        *,
        plan: Plan,
        stack: Stack,
        client: DumontClient,
        ledger: Ledger,
        wait_default: str | None,
        wait_timeout: float | None,
        logs: bool,
        emit: EventSink,
        allow_restart: bool,
        observed: Observed,
        secrets: SecretStore,
        redact: Redactor,
        poll: float,
        services: KindServices,
    ) -> None:
        self.plan = plan
        self.stack = stack
        self.client = client
        self.ledger = ledger
        self.wait_default = wait_default
        self.wait_timeout = wait_timeout
        self.logs = logs
        self._emit = emit
        self.allow_restart = allow_restart
        self.observed = observed
        self.secrets = secrets
        self.redact = redact
        self.poll = poll
        self.ops = load_ops(services)  # kind -> its API calls
        self.changes = {c.address: c for c in plan.changes if c.action is not Action.noop}
        self.plan_blocked = dict(plan.blocked)
        self.outputs: dict[str, dict[str, Any]] = outputs_from(ledger.state, observed)
        self.result = ApplyResult()
        self.lock = threading.Lock()
        self.stop = threading.Event()  # set on Ctrl-C: waits end, nothing new starts
        self.extra: dict[str, dict[str, Any]] = {}  # address -> more for its change_done

    # -- the whole apply -------------------------------------------------------------------

    def emit(self, event: ApplyEvent) -> None:
        self._emit(event)

    def run(self, parallelism: int) -> ApplyResult:
        start = time.monotonic()
        self.emit(
            ApplyEvent(
                "apply_start",
                data={"changes": len(self.changes), "parallelism": parallelism},
            )
        )
        for address, why in self.plan_blocked.items():  # not converged: exit 3, listed
            self.result.skipped[address] = f"blocked: {why}"
            self.emit(ApplyEvent("change_skipped", address=address, error=f"blocked: {why}"))
        outcome = run_dag(
            {a: c.depends_on for a, c in self.changes.items()},
            self.run_change,
            parallelism=parallelism,
            on_skip=self.skipped,
            on_abort=self.stop.set,
        )
        result = self.result
        result.done = list(outcome.done)
        result.bugs = [e for e in outcome.failed.values() if not isinstance(e, DumontError)]
        result.elapsed = time.monotonic() - start
        self.emit(
            ApplyEvent(
                "apply_done",
                elapsed=result.elapsed,
                data={
                    "done": result.done,
                    "failed": dict(result.failed),
                    "skipped": dict(result.skipped),
                    "exit_code": result.exit_code,
                },
            )
        )
        return result

    def skipped(self, address: str, cause: str) -> None:
        why = f"{cause} failed"
        with self.lock:
            self.result.skipped[address] = why
        change = self.changes[address]
        self.emit(
            ApplyEvent("change_skipped", address=address, action=change.action.value, error=why)
        )

    def run_change(self, address: str) -> None:
        change = self.changes[address]
        started = time.monotonic()
        self.emit(
            ApplyEvent(
                "change_start",
                address=address,
                action=change.action.value,
                remote_id=change.remote_id,
            )
        )
        try:
            remote_id = self.perform(change)
        except BaseException as exc:
            message = self.redact(_describe(exc))
            with self.lock:
                self.result.failed[address] = message
                if isinstance(exc, WaitTimeoutError):
                    self.result.wait_timeouts.append(address)
                elif isinstance(exc, WaitFailedError):
                    self.result.wait_failures.append(address)
            self.emit(
                ApplyEvent(
                    "change_failed",
                    address=address,
                    action=change.action.value,
                    remote_id=_text(self.outputs.get(address, {}).get("id") or change.remote_id),
                    elapsed=time.monotonic() - started,
                    error=message,
                    status=exc.last_status if isinstance(exc, ApplyInterrupted) else None,
                    data={"interrupted": True} if isinstance(exc, ApplyInterrupted) else {},
                )
            )
            raise
        self.emit(
            ApplyEvent(
                "change_done",
                address=address,
                action=change.action.value,
                remote_id=remote_id,
                elapsed=time.monotonic() - started,
                data=self.extra.get(address, {}),
            )
        )

    # -- one change ------------------------------------------------------------------------

    def perform(self, change: ResourceChange) -> str | None:
        """Carry out one change; return the remote id it leaves at its address."""
        handler = HANDLERS[change.kind]
        action = change.action
        if action is Action.forget:
            self.ledger.remove(change.address)
            crash_point()
            return None
        if action is Action.delete:
            return self.delete(handler, change)
        resource = self.stack.resources.get(change.address)
        if resource is None:
            raise ApplyError(
                f"{change.address} is not in the spec, so it cannot be {action.value}d"
            )
        if action is Action.adopt:
            return adopt(self, handler, change, resource)
        if action in (Action.create, Action.run, Action.replace):
            remote_id = self.create(handler, change, resource)
        elif action in (Action.update, Action.pause, Action.resume):
            remote_id = self.update(handler, change, resource)
        else:  # pragma: no cover - every Action is handled above
            raise ApplyError(f"{change.address}: apply does not know action {action.value}")
        if action in STARTS_WAIT and remote_id is not None:
            self.wait(handler, change, resource, remote_id)
        return remote_id

    def create(
        self,
        handler: RegisteredHandler,
        change: ResourceChange,
        resource: Resource,
        *,
        new_key: bool = False,
    ) -> str:
        resolved = self.prepare(resource)
        remote_name = change.remote_name or handler.remote_name(
            self.stack.project, resource.name, resolved.values
        )
        key = uuid.uuid4().hex if new_key else self.idempotency_key(change)
        old_id = change.remote_id if change.action is Action.replace else None
        if old_id is not None:
            self.check_restart(handler, change, old_id)
        op = self.ledger.begin_op(
            change.address,
            change.action.value,
            kind=change.kind,
            remote_name=remote_name,
            idempotency_key=key,
            remote_id=old_id,
        )
        crash_point()
        if old_id is not None:
            self.ops[handler.kind].delete(self.client, old_id, None)
        sent = self.client.transport.change_requests
        try:
            live = self.ops[handler.kind].create(self.client, resolved.body, key)
        except DumontError as exc:
            if _definite(exc) or self.client.transport.change_requests == sent:
                # Nothing was created (the server said no, the race found no machine and
                # cleaned up after itself, or nothing that could create was sent at all, by
                # any thread: an offer search that failed): the journal entry can go.
                self.ledger.fail_op(op)
                crash_point()
            raise
        remote_id = handler.live_id(live)
        self.ledger.finish_op(op, remote_id=remote_id, record=resolved.record)
        crash_point()
        self.set_outputs(change.address, handler, live)
        return remote_id

    def update(self, handler: RegisteredHandler, change: ResourceChange, resource: Resource) -> str:
        remote_id = change.remote_id
        if remote_id is None:
            raise ApplyError(f"{change.address} has no remote id to {change.action.value}")
        resolved = self.prepare(resource)
        fields = [c.field for c in change.changes if not c.field.startswith("lifecycle.")]
        if change.action in (Action.pause, Action.resume) and "state" not in fields:
            fields.append("state")
        op = self.ledger.begin_op(
            change.address,
            change.action.value,
            kind=change.kind,
            remote_name=change.remote_name,
            remote_id=remote_id,
        )
        crash_point()
        ops = self.ops[handler.kind]
        live = ops.update(self.client, remote_id, resolved.values, fields) if fields else None
        self.ledger.finish_op(op, remote_id=remote_id, record=resolved.record)
        crash_point()
        if live is not None:
            self.set_outputs(change.address, handler, live)
        return remote_id

    def delete(self, handler: RegisteredHandler, change: ResourceChange) -> str | None:
        if change.remote_id is not None:
            self.ledger.begin_op(
                change.address,
                "delete",
                kind=change.kind,
                remote_name=change.remote_name,
                remote_id=change.remote_id,
            )
            crash_point()
            self.ops[handler.kind].delete(self.client, change.remote_id, None)
        self.ledger.remove(change.address)
        crash_point()
        return change.remote_id

    def check_restart(
        self, handler: RegisteredHandler, change: ResourceChange, old_id: str
    ) -> None:
        """A saved plan may replace an active job only when this apply allows restarts too."""
        if self.allow_restart or not handler.runs_to_completion:
            return
        try:
            live = self.ops[handler.kind].get(self.client, old_id)
        except ApiError:
            return
        if handler.is_active(live):
            raise ApplyError(
                f"{change.address} is {handler.status(live)} and would be cancelled and "
                "started again",
                "re-run with --allow-restart to replace it, or wait until it finishes",
            )

    # -- values, references and secrets ----------------------------------------------------

    def prepare(self, resource: Resource) -> Resolved:
        """The request (references and secrets filled in) and the ledger record."""
        with self.lock:
            outputs = dict(self.outputs)
        resolved = resolve_body(
            resource, self.stack.project, outputs, self.secrets, self.ledger.state.salt
        )
        for value in resolved.secrets:
            self.redact.add(value)
        return resolved

    def set_outputs(self, address: str, handler: RegisteredHandler, live: WireModel) -> None:
        out = handler.outputs(live)
        out["id"] = id_value(str(out.get("id")))
        with self.lock:
            self.outputs[address] = out

    def idempotency_key(self, change: ResourceChange) -> str:
        for op in self.ledger.state.pending_for(change.address):
            if op.action == change.action.value and op.idempotency_key:
                return op.idempotency_key
        return uuid.uuid4().hex

    # -- waits -----------------------------------------------------------------------------

    def wait_target(self, handler: RegisteredHandler, resource: Resource) -> str:
        target = self.wait_default or handler.wait_target(handler.controls(resource.spec))
        if target == "completed" and not handler.runs_to_completion:
            return "running"
        return target

    def wait(
        self, handler: RegisteredHandler, change: ResourceChange, resource: Resource, remote_id: str
    ) -> None:
        target = self.wait_target(handler, resource)
        if target == "none":
            return
        live = wait_resource(
            self.client,
            handler,
            self.ops[handler.kind],
            change.address,
            remote_id,
            target,
            action=change.action.value,
            timeout=self.wait_timeout,
            poll=self.poll,
            logs=self.logs,
            emit=self.emit,
            redact=self.redact,
            stop=self.stop,
        )
        self.set_outputs(change.address, handler, live)


# -- helpers -------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _definite(exc: DumontError) -> bool:
    """Whether a failed create surely created nothing. A lost connection or a 5xx may have
    created the object (the journal entry then stays, and the next plan adopts it by name)."""
    if isinstance(exc, ConnectError | ServerError):
        return False
    return not isinstance(exc, ApiError) or 400 <= exc.status_code < 500


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DumontError):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc}"
