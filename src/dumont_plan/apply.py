"""apply_plan: carry a Plan out against the API. The only module that mutates anything.

    result = apply_plan(plan, stack, client, ledger, parallelism=8, on_event=print)
    result.done / result.failed / result.skipped      (by address)
    result.exit_code                                  0, 3, 4 or 5 (DESIGN §3)

Changes run in dependency order, up to `parallelism` at once (`scheduler.run_dag`); a failure
skips its dependents, transitively, while independent changes complete. No-ops are not run.

Every mutation is journaled in the ledger first, so a crash at any point converges on the next
apply (the plan adopts an object found by its remote name instead of creating a duplicate):

    create, run   begin_op -> handler.create(body, Idempotency-Key) -> finish_op(id, record)
    replace       begin_op -> handler.delete(old) -> handler.create(new) -> finish_op
                  (delete first: a job's old run is cancelled, which `--allow-restart` allowed
                  at plan time; an instance is a scarce, hourly-billed machine and two of them
                  under one address would be a duplicate if apply died between the steps.
                  The price: if the new race finds no machine, the address has none until the
                  next apply)
    update, pause, resume
                  begin_op -> handler.update(values, changed fields) -> finish_op(record)
    delete        begin_op -> handler.delete (a job: cancel if active; an instance: DELETE)
                  -> ledger.remove
    adopt         ledger.record (no API call);  forget: ledger.remove (no API call)

The Idempotency-Key of a create is the one journaled by an interrupted create of the same
address when there is one, so a create retried after a crash is replayed, not repeated.
`${kind.name.attr}` references are filled in just before each request from what this apply
created (or the ledger and live objects for resources it did not touch); `${secret.NAME}` is read
then, handed to the request, and never stored: the ledger gets the salted-hash record of
`plan.fingerprint.desired_record`, and every event text goes through a `Redactor`.

Waits (after create, run, replace and resume): the resource's `wait:` or the `wait` argument
(`--wait`), `none | running | completed` (an instance has no `completed`: it means running).
A wait ends at the target, or at a terminal failure (-> exit 5), or after `wait_timeout`
seconds (-> exit 4); the change then counts as failed, so its dependents are skipped.

Test hook: with DUMONT_TEST_CRASH_AFTER=N in the environment the process dies (os._exit(137),
as SIGKILL would) right after its Nth ledger write, to prove the journal by real crashes.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dumont_plan.client import DumontClient
from dumont_plan.errors import ApiError, ApplyError, ConnectError, DumontError, ServerError
from dumont_plan.events import ApplyEvent, EventSink, Redactor
from dumont_plan.kinds.base import BaseHandler, id_value
from dumont_plan.kinds.registry import HANDLERS
from dumont_plan.kinds.resolve import Resolved, outputs_from, resolve_body
from dumont_plan.ledger import Ledger
from dumont_plan.plan.model import Action, Observed, Plan, ResourceChange
from dumont_plan.scheduler import run_dag
from dumont_plan.secrets import SecretStore, default_secrets_files
from dumont_plan.spec.stack import Resource, Stack
from dumont_plan.wait import WaitResult, wait_for

CRASH_ENV = "DUMONT_TEST_CRASH_AFTER"
WAIT_TARGETS = ("none", "running", "completed")
STARTS_WAIT = frozenset({Action.create, Action.run, Action.replace, Action.resume})


class WaitTimedOut(ApplyError):
    """A wait's time limit elapsed (exit 4)."""

    exit_code = 4


class WaitEndedFailed(ApplyError):
    """A waited resource reached a terminal failure (exit 5)."""

    exit_code = 5


@dataclass
class ApplyResult:
    """What an apply did, by address (errors are redacted, one line each)."""

    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # address -> why
    wait_timeouts: list[str] = field(default_factory=list)
    wait_failures: list[str] = field(default_factory=list)
    bugs: list[BaseException] = field(default_factory=list)  # not DumontError: re-raised later
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped

    @property
    def exit_code(self) -> int:
        """0 ok; 3 partial (a change failed); else 4 a wait timed out; 5 a waited job failed."""
        waits = set(self.wait_timeouts) | set(self.wait_failures)
        if any(address not in waits for address in self.failed):
            return 3
        if self.wait_timeouts:
            return 4
        if self.wait_failures:
            return 5
        return 3 if self.skipped else 0


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
) -> ApplyResult:
    """Carry out `plan` (see the module doc). Never raises for a failed change: see the result.

    `wait_default` overrides every resource's `wait:` (`none`, `running`, `completed`);
    `observed` (what the plan was built from) supplies the attributes of untouched resources
    for references; `secrets` defaults to the environment and the secrets files of the stack;
    `allow_restart` is re-checked here for a saved plan's replace of an active job.
    """
    if wait_default is not None and wait_default not in WAIT_TARGETS:
        raise ApplyError(
            f"--wait {wait_default!r} is not a wait target", "use none, running or completed"
        )
    if plan.errors:
        raise ApplyError("the plan has errors: " + "; ".join(plan.errors), "fix them and re-plan")
    applier = _Applier(
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
    )
    return applier.run(parallelism)


class _Applier:
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
        self.changes = {c.address: c for c in plan.changes if c.action is not Action.noop}
        self.outputs: dict[str, dict[str, Any]] = outputs_from(ledger.state, observed)
        self.result = ApplyResult()
        self._lock = threading.Lock()
        self._started: dict[str, float] = {}

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
        outcome = run_dag(
            {a: c.depends_on for a, c in self.changes.items()},
            self.run_change,
            parallelism=parallelism,
            on_skip=self.skipped,
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
        with self._lock:
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
            with self._lock:
                self.result.failed[address] = message
                if isinstance(exc, WaitTimedOut):
                    self.result.wait_timeouts.append(address)
                elif isinstance(exc, WaitEndedFailed):
                    self.result.wait_failures.append(address)
            self.emit(
                ApplyEvent(
                    "change_failed",
                    address=address,
                    action=change.action.value,
                    remote_id=self.outputs.get(address, {}).get("id") or change.remote_id,
                    elapsed=time.monotonic() - started,
                    error=message,
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
            )
        )

    # -- one change ------------------------------------------------------------------------

    def perform(self, change: ResourceChange) -> str | None:
        """Carry out one change; return the remote id it leaves at its address."""
        handler = HANDLERS[change.kind]
        action = change.action
        if action is Action.forget:
            self.ledger.remove(change.address)
            _crash_point()
            return None
        if action is Action.delete:
            return self.delete(handler, change)
        resource = self.stack.resources.get(change.address)
        if resource is None:
            raise ApplyError(
                f"{change.address} is not in the spec, so it cannot be {action.value}d"
            )
        if action is Action.adopt:
            return self.adopt(handler, change, resource)
        if action in (Action.create, Action.run, Action.replace):
            remote_id = self.create(handler, change, resource)
        elif action in (Action.update, Action.pause, Action.resume):
            remote_id = self.update(handler, change, resource)
        else:  # pragma: no cover - every Action is handled above
            raise ApplyError(f"{change.address}: apply does not know action {action.value}")
        if action in STARTS_WAIT and remote_id is not None:
            self.wait(handler, change, resource, remote_id)
        return remote_id

    def create(self, handler: BaseHandler, change: ResourceChange, resource: Resource) -> str:
        resolved = self.prepare(resource)
        remote_name = change.remote_name or handler.remote_name(
            self.stack.project, resource.name, resolved.values
        )
        key = self.idempotency_key(change)
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
        _crash_point()
        if old_id is not None:
            handler.delete(self.client, old_id, None)
        try:
            live = handler.create(self.client, resolved.body, key)
        except DumontError as exc:
            if _definite(exc):
                # Nothing was created (the server said no, or the race found no machine and
                # cleaned up after itself): the journal entry can go.
                self.ledger.fail_op(op)
                _crash_point()
            raise
        remote_id = handler.live_id(live)
        self.ledger.finish_op(op, remote_id=remote_id, record=resolved.record)
        _crash_point()
        self.set_outputs(change.address, handler, live)
        return remote_id

    def update(self, handler: BaseHandler, change: ResourceChange, resource: Resource) -> str:
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
        _crash_point()
        live = handler.update(self.client, remote_id, resolved.values, fields) if fields else None
        self.ledger.finish_op(op, remote_id=remote_id, record=resolved.record)
        _crash_point()
        if live is not None:
            self.set_outputs(change.address, handler, live)
        return remote_id

    def delete(self, handler: BaseHandler, change: ResourceChange) -> str | None:
        if change.remote_id is not None:
            self.ledger.begin_op(
                change.address,
                "delete",
                kind=change.kind,
                remote_name=change.remote_name,
                remote_id=change.remote_id,
            )
            _crash_point()
            handler.delete(self.client, change.remote_id, None)
        self.ledger.remove(change.address)
        _crash_point()
        return change.remote_id

    def adopt(self, handler: BaseHandler, change: ResourceChange, resource: Resource) -> str:
        if change.remote_id is None:
            raise ApplyError(f"{change.address}: nothing to adopt (no remote id in the plan)")
        record = self.prepare(resource).record
        pending = self.ledger.state.pending_for(change.address)
        ran = any(op.action in ("create", "run", "replace") for op in pending)
        self.ledger.record(
            change.address,
            kind=change.kind,
            remote_id=change.remote_id,
            remote_name=change.remote_name,
            record=record,
            run=ran,
        )
        _crash_point()
        return change.remote_id

    def check_restart(self, handler: BaseHandler, change: ResourceChange, old_id: str) -> None:
        """A saved plan may replace an active job only when this apply allows restarts too."""
        if self.allow_restart or handler.kind != "job":
            return
        try:
            live = handler.get(self.client, old_id)
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
        with self._lock:
            outputs = dict(self.outputs)
        resolved = resolve_body(
            resource, self.stack.project, outputs, self.secrets, self.ledger.state.salt
        )
        for value in resolved.secrets:
            self.redact.add(value)
        return resolved

    def set_outputs(self, address: str, handler: BaseHandler, live: Mapping[str, Any]) -> None:
        out = handler.outputs(live)
        out["id"] = id_value(str(out.get("id")))
        with self._lock:
            self.outputs[address] = out

    def idempotency_key(self, change: ResourceChange) -> str:
        for op in self.ledger.state.pending_for(change.address):
            if op.action == change.action.value and op.idempotency_key:
                return op.idempotency_key
        return uuid.uuid4().hex

    # -- waits -----------------------------------------------------------------------------

    def wait_target(self, handler: BaseHandler, resource: Resource) -> str:
        target = self.wait_default or handler.wait_target(handler.controls(resource.spec))
        if target == "completed" and handler.kind != "job":
            return "running"
        return target

    def wait(
        self, handler: BaseHandler, change: ResourceChange, resource: Resource, remote_id: str
    ) -> None:
        target = self.wait_target(handler, resource)
        if change.action is Action.resume and target == "none":
            return
        if target == "none":
            return
        address = change.address
        started = time.monotonic()
        log = _LogFollower(self, handler, address, remote_id) if self.logs else None
        last_status: list[str] = []

        def tick(live: dict[str, Any]) -> None:
            status = handler.status(live)
            if log is not None:
                log.poll(status)
            if not last_status or last_status[-1] != status or int(time.monotonic()) % 5 == 0:
                last_status.append(status)
                self.emit(
                    ApplyEvent(
                        "wait_progress",
                        address=address,
                        action=change.action.value,
                        remote_id=remote_id,
                        status=status,
                        elapsed=time.monotonic() - started,
                        data={"target": target},
                    )
                )

        result: WaitResult = wait_for(
            fetch=lambda: handler.get(self.client, remote_id),
            done=lambda live: handler.wait_done(live, target),
            failed=handler.is_failed,
            timeout=self.wait_timeout,
            on_tick=tick,
            poll=self.poll,
        )
        if log is not None:
            log.poll(handler.status(result.state), final=True)
        self.set_outputs(address, handler, result.state)
        status = handler.status(result.state)
        if result.outcome == "timeout":
            raise WaitTimedOut(
                f"waited {result.elapsed:.0f}s for {address} to be {target}; it is {status}",
                "raise --wait-timeout, or check it with `dumont show`",
            )
        if result.outcome == "failed":
            detail = result.state.get("error_message")
            text = f"{address} ended {status} while waiting for {target}"
            raise WaitEndedFailed(
                f"{text}: {detail}" if detail else text,
                f"see its logs: dumont job logs {remote_id}" if handler.kind == "job" else None,
            )


class _LogFollower:
    """Streams the new lines of a job's log as `log` events while a wait polls it."""

    def __init__(
        self, applier: _Applier, handler: BaseHandler, address: str, remote_id: str
    ) -> None:
        self.applier = applier
        self.handler = handler
        self.address = address
        self.remote_id = remote_id
        self.seen = 0

    def poll(self, status: str, final: bool = False) -> None:
        if self.handler.kind != "job" or status in ("pending", "provisioning"):
            return
        try:
            text = str(self.applier.client.jobs.logs(self.remote_id).get("logs") or "")
        except ApiError:
            return
        if len(text) < self.seen:
            self.seen = 0  # the log was rotated or cut: start over
        fresh = text[self.seen :]
        if not final and "\n" in fresh:
            fresh = fresh[: fresh.rindex("\n") + 1]  # whole lines only until the end
        elif not final:
            return
        self.seen += len(fresh)
        for line in fresh.splitlines():
            self.applier.emit(
                ApplyEvent(
                    "log",
                    address=self.address,
                    remote_id=self.remote_id,
                    line=self.applier.redact(line),
                )
            )


# -- helpers -------------------------------------------------------------------------------


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


_crash_lock = threading.Lock()
_crash_count = 0


def _crash_point() -> None:
    """After a ledger write: die here when DUMONT_TEST_CRASH_AFTER says so (tests only)."""
    global _crash_count
    limit = os.environ.get(CRASH_ENV)
    if not limit:
        return
    with _crash_lock:
        _crash_count += 1
        if _crash_count >= int(limit):
            os._exit(137)
