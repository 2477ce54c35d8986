"""build_plan(stack, observed, ledger, options) -> Plan. Pure: no I/O, no clock unless unset.

For each resource of the spec, dependencies first:

- not in the ledger: an object on the server named like it (an interrupted apply, a lost
  state file) is *adopted* (recorded, no API call); otherwise *create*.
- in the ledger: desired values are compared with the last-applied ones (and with what the
  server echoes, for `changed` drift), field by field through the kind's table; the kind's
  `decide` picks the action (run policies, pause/resume, lifecycle drift, gone objects).

Then every ledger address that is not in the spec is an orphan: *delete* (or *forget* when
nothing is left to stop). `--destroy` deletes every ledger address, dependents first.
`lifecycle.prevent_destroy` turns a delete or replace into a plan error; `ignore_changes`
leaves fields out of the comparison. Costs come from the observed offers.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from dumont_plan.errors import CycleError
from dumont_plan.kinds.base import FieldClass, RegisteredHandler, id_value
from dumont_plan.kinds.decision import Situation
from dumont_plan.kinds.registry import HANDLERS
from dumont_plan.plan import cost
from dumont_plan.plan.diff import alike, changed_fields
from dumont_plan.plan.fingerprint import (
    canonical_json,
    fingerprint,
    has_secret,
    has_unknown,
    live_by_id,
    materialize,
    observed_fingerprint,
    same_name_ids,
)
from dumont_plan.plan.governs import governed_note, governed_values
from dumont_plan.plan.model import (
    SENSITIVE,
    STARTS,
    UNKNOWN,
    Action,
    FieldChange,
    Observed,
    Plan,
    ResourceChange,
)
from dumont_plan.plan.select import PlanOptions, select_addresses
from dumont_plan.spec.common import REF_RE
from dumont_plan.spec.graph import reverse, topological_order
from dumont_plan.spec.refs import Ref, refs_in
from dumont_plan.spec.stack import Resource, Stack
from dumont_plan.state.ledger import Ledger, LedgerEntry, LedgerState, PendingOp
from dumont_plan.wire_models import WireModel

STABLE = frozenset({Action.noop, Action.update, Action.pause, Action.resume, Action.adopt})
REMOVALS = frozenset({Action.delete, Action.forget})


def build_plan(
    stack: Stack,
    observed: Observed,
    ledger: Ledger | LedgerState,
    options: PlanOptions | None = None,
) -> Plan:
    """The plan for `stack` against `observed` and the ledger (see the module doc)."""
    state = ledger.state if isinstance(ledger, Ledger) else ledger
    return _Planner(stack, observed, state, options or PlanOptions()).run()


class _Planner:
    def __init__(
        self, stack: Stack, observed: Observed, state: LedgerState, options: PlanOptions
    ) -> None:
        self.stack = stack
        self.observed = observed
        self.state = state
        self.options = options
        self.now = options.now or datetime.now(UTC)
        self.dumps = stack.dumps()  # each spec serialised once: the digest and the values
        self.plan = Plan(
            project=stack.project,
            created_at=self.now.isoformat(timespec="seconds").replace("+00:00", "Z"),
            spec_files=list(stack.files),
            spec_digest=stack.digest(self.dumps) if options.fingerprints else "",
            state_serial=state.serial,
            options=options.as_dict(),
        )
        self.errors = self.plan.errors
        self.decided: dict[str, ResourceChange] = {}
        self.live_index = {
            kind: live_by_id(handler, observed.objects(kind)) for kind, handler in HANDLERS.items()
        }
        # Indexes built once, so that planning N resources stays O(N): live objects by name,
        # interrupted operations by address, and the ids each kind's addresses claim.
        self.live_named: dict[str, dict[str | None, list[tuple[int, WireModel]]]] = {}
        for kind, handler in HANDLERS.items():
            named = self.live_named[kind] = {}
            for position, obj in enumerate(observed.objects(kind)):
                named.setdefault(handler.live_name(obj), []).append((position, obj))
        self.pending: dict[str, list[PendingOp]] = {}
        for op in state.pending:
            self.pending.setdefault(op.address, []).append(op)
        self.claimed_ids: dict[str, set[str]] = {}
        self.missing_secrets: set[str] = set()  # the messages already in errors

    # -- the whole plan --------------------------------------------------------------------

    def run(self) -> Plan:
        if self.state.project and self.state.project != self.stack.project:
            self.errors.append(
                f"the state belongs to project {self.state.project!r}, the spec to "
                f"{self.stack.project!r}; pass --state PATH to use another state file"
            )
            return self.plan
        graph = self.full_graph()
        try:
            order = topological_order(graph)
        except CycleError as exc:
            self.errors.append(
                "dependency cycle: " + " -> ".join(exc.cycle) + "; break it by removing one "
                "of these references or depends_on entries"
            )
            return self.plan
        selected = self.select(graph)
        if self.errors:
            return self.plan
        if self.options.destroy:
            removals = [a for a in order if a in selected and a in self.state.resources]
            for address in removals:
                self.plan_removal(address, "destroy", drift=None)
        else:
            for address in order:
                if address not in selected:
                    continue
                if address in self.stack.resources:
                    self.plan_resource(self.stack.resources[address])
                else:
                    self.plan_removal(address, "not in the spec", drift="orphan")
        self.block_after_failures(order, graph)
        self.link_dependencies(graph)
        cost.summarize(self.plan, self.options.max_cost, self.observed)
        return self.plan

    def block_after_failures(self, order: list[str], graph: dict[str, list[str]]) -> None:
        """What would start but depends on something whose last run ended failed (and is not
        run again by this plan) waits: it would run on the failure's output. In dependency
        order, so a dependent of a blocked resource is blocked too."""
        blocked = self.plan.blocked
        for address in order:
            change = self.decided.get(address)
            if change is None or change.action not in STARTS:
                continue
            for dep in graph.get(address, []):
                before = self.decided.get(dep)
                if before is None:
                    continue
                if dep in blocked:
                    why = f"waits for {dep}, which is blocked"
                elif before.action is Action.noop and before.status in FAILED_RUNS:
                    why = (
                        f"waits for {dep}, whose last run ended {before.status}; re-run it "
                        f"with `dumont apply --replace {dep}`"
                    )
                else:
                    continue
                blocked[address] = why
                change.action = Action.noop
                change.reason = "blocked"
                change.notes.append(why)
                change.hourly_cost = change.worst_case_cost = None
                change.attributes = {}
                break

    def full_graph(self) -> dict[str, list[str]]:
        graph = {a: [d for d in r.refs if d != a] for a, r in self.stack.resources.items()}
        for address, entry in self.state.resources.items():
            graph.setdefault(address, [d for d in entry.depends_on if d != address])
        return graph

    def select(self, graph: dict[str, list[str]]) -> set[str]:
        selection = select_addresses(graph, set(self.stack.resources), self.options)
        self.errors.extend(selection.errors)
        self.replace = selection.replace
        return selection.selected

    # -- one resource of the spec ----------------------------------------------------------

    def plan_resource(self, resource: Resource) -> None:
        handler = HANDLERS[resource.kind]
        address = resource.address
        dumped = self.dumps[address]
        values = handler.desired_from(self.stack.project, resource.name, dumped)
        controls = handler.controls_from(dumped)
        lifecycle = controls.get("lifecycle") or {}
        ignore = [str(f) for f in lifecycle.get("ignore_changes") or []]
        for name in ignore:
            if name not in values:
                self.errors.append(
                    f"{address}: lifecycle.ignore_changes names {name!r}, which is not a field "
                    f"it can change; use fields from `dumont explain {handler.kind}`"
                )
        desired = materialize(
            handler,
            values,
            resolve=lambda ref: self.resolve(ref, address),
            secret_hash=lambda name: self.secret_hash(name, address),
            salt=self.state.salt,
        )
        remote_name = handler.remote_name(self.stack.project, resource.name, values)
        change = ResourceChange(
            address=address,
            kind=resource.kind,
            name=resource.name,
            action=Action.noop,
            remote_name=remote_name,
            desired_fingerprint=fingerprint(desired) if self.options.fingerprints else None,
        )
        self.decided[address] = change
        entry = self.state.resources.get(address)
        price = handler.hourly_price(values, self.observed.offers)

        if entry is None or not entry.remote_id:
            names = {remote_name, *(op.remote_name for op in self.pending_for(address))}
            found = self.adoptable(handler, resource.kind, names, self.claimed(resource.kind))
            if found is not None:
                self.adopt(change, handler, found, "found on the server by name")
                return
            change.action = Action.create
            change.reason = handler.describe(values) or "new"
            change.attributes = create_attributes(handler, values, desired)
            if self.options.fingerprints:
                change.observed_fingerprint = observed_fingerprint(
                    handler,
                    None,
                    same_name=same_name_ids(
                        handler, self.named(resource.kind, {remote_name}), remote_name
                    ),
                )
            self.price_start(change, handler, values, price)
            self.check_start(change, handler, values)
            self.note_effect(change, handler, values, desired)
            return

        change.remote_id = entry.remote_id
        live = self.live_index[resource.kind].get(entry.remote_id)
        restarting = [op for op in self.pending_for(address) if op.action != "delete"]
        if restarting:
            names = {op.remote_name for op in restarting if op.remote_name} or {remote_name}
            claimed = self.claimed(resource.kind) | {entry.remote_id}
            found = self.adoptable(handler, resource.kind, names, claimed)
            if found is not None:
                self.adopt(
                    change, handler, found, f"an interrupted {restarting[-1].action} made it"
                )
                return
        change.status = handler.status(live) if live is not None else "gone"
        change.observed_fingerprint = self.observed_fingerprint(handler, live)
        changes = self.compare(handler, entry, live, values, desired, ignore)
        applied_price = handler.hourly_price(entry.applied_spec or values, self.observed.offers)
        decision = handler.decide(
            Situation(
                address=address,
                values=desired,
                controls=controls,
                live=live,
                changes=changes,
                forced_replace=address in self.replace,
                allow_restart=self.options.allow_restart,
                now=self.now,
                price=applied_price if applied_price is not None else price,
            )
        )
        change.action = decision.action
        change.reason = decision.reason
        change.drift = decision.drift
        change.notes.extend(decision.notes)
        change.changes = changes
        if decision.error:
            self.errors.append(decision.error)
        protected = bool(lifecycle.get("prevent_destroy"))
        if change.action is Action.replace and protected:
            self.errors.append(
                f"{address} has lifecycle.prevent_destroy and would be replaced "
                f"({change.reason}); remove prevent_destroy to allow it, or undo the change"
            )
        if (
            change.action is Action.noop
            and not decision.error
            and protected != entry.prevent_destroy
            and "lifecycle" not in ignore
        ):
            change.action = Action.update
            change.reason = "lifecycle.prevent_destroy (recorded in the state only)"
            change.changes.append(
                FieldChange(
                    field="lifecycle.prevent_destroy", old=entry.prevent_destroy, new=protected
                )
            )
        if change.action in (Action.create, Action.replace, Action.run, Action.resume):
            self.price_start(change, handler, values, price, live)
        if change.action in (Action.create, Action.replace, Action.run):
            self.check_start(change, handler, values)
        if live is not None and change.action in (Action.replace, Action.pause):
            change.hourly_saving = handler.live_hourly(live)
        if change.action in (Action.create, Action.update, Action.replace):
            self.note_effect(change, handler, values, desired)

    def check_start(
        self, change: ResourceChange, handler: RegisteredHandler, values: dict[str, Any]
    ) -> None:
        """A new run's start time on its line (a schedule's next run) or why it cannot start."""
        when = handler.when_text(values, self.now)
        if when:
            change.reason = f"{change.reason}; {when}" if change.reason else when
        problem = handler.start_problem(values, self.now)
        if problem:
            self.errors.append(f"{change.address}: {problem}")

    def note_effect(
        self,
        change: ResourceChange,
        handler: RegisteredHandler,
        values: dict[str, Any],
        desired: dict[str, Any],
    ) -> None:
        """The kind's note on the cost of what it governs (plan/governs.py)."""
        note = governed_note(handler, values, desired, self.decided, self.live_index)
        if note:
            change.notes.append(note)

    def compare(
        self,
        handler: RegisteredHandler,
        entry: LedgerEntry,
        live: WireModel | None,
        values: dict[str, Any],
        desired: dict[str, Any],
        ignore: list[str],
    ) -> list[FieldChange]:
        """Desired vs last applied, where the server's echo of a field overrides the ledger."""
        baseline = dict(entry.applied_spec)
        drifted: set[str] = set()
        if live is not None:
            echoed = handler.live_values(live)
            echoed.update(governed_values(entry.kind, entry.remote_id or "", self.live_index))
            for name, value in echoed.items():
                if name not in baseline:
                    baseline[name] = value
                elif changed_fields(
                    {name: baseline[name]}, {name: value}, [name], normalize=handler.normalize
                ):
                    baseline[name] = value
                    drifted.add(name)
        if baseline == desired and alike(baseline, desired):
            return []  # the common case (nothing changed), checked in one pass
        keys = [
            k
            for k in desired
            if k not in ignore and not (k in handler.unset_is_any and desired[k] is None)
        ]
        names = changed_fields(
            baseline, desired, keys, unordered=handler.unordered, normalize=handler.normalize
        )
        out = []
        for name in names:
            cls = handler.fields.get(name)
            sensitive = (
                cls is FieldClass.secret
                or has_secret(values.get(name))
                or has_secret(baseline.get(name))
            )
            new = desired.get(name)
            out.append(
                FieldChange(
                    field=name,
                    old=None if sensitive else baseline.get(name),
                    new=None if sensitive else (UNKNOWN if has_unknown(new) else new),
                    sensitive=sensitive,
                    forces_replace=cls is FieldClass.replace,
                    drift=name in drifted,
                    via=[]
                    if sensitive
                    else changed_references(values.get(name), baseline.get(name)),
                )
            )
        return out

    def pending_for(self, address: str) -> list[PendingOp]:
        """The ledger's interrupted operations on `address` (LedgerState.pending_for)."""
        return self.pending.get(address, [])

    def claimed(self, kind: str) -> set[str]:
        """The remote ids of `kind` no address may adopt (LedgerState.claimed, once per kind)."""
        ids = self.claimed_ids.get(kind)
        if ids is None:
            ids = self.claimed_ids[kind] = self.state.claimed(kind)
        return ids

    def named(self, kind: str, names: set[str | None]) -> list[WireModel]:
        """The live objects of `kind` with one of `names`, in the order the server listed them."""
        index = self.live_named.get(kind, {})
        return [obj for _, obj in sorted(p for name in names for p in index.get(name, ()))]

    def adoptable(
        self,
        handler: RegisteredHandler,
        kind: str,
        names: set[str | None],
        claimed: set[str],
    ) -> WireModel | None:
        """The newest live object with one of `names` that no address owns (None: none)."""
        found = [o for o in self.named(kind, names) if handler.live_id(o) not in claimed]
        if not found:
            return None
        return max(found, key=lambda o: (handler.live_created(o), handler.live_id(o)))

    def adopt(
        self, change: ResourceChange, handler: RegisteredHandler, live: WireModel, why: str
    ) -> None:
        change.action = Action.adopt
        change.remote_id = handler.live_id(live)
        change.status = handler.status(live)
        change.reason = f"{why} ({change.remote_name}, {change.status})"
        change.observed_fingerprint = self.observed_fingerprint(handler, live)

    def price_start(
        self,
        change: ResourceChange,
        handler: RegisteredHandler,
        values: dict[str, Any],
        price: float | None,
        live: WireModel | None = None,
    ) -> None:
        if change.action is Action.resume and live is not None:
            price = handler.live_price(live) or price
        if change.action is Action.create and values.get("state") == "paused":
            price = 0.0
        change.hourly_cost = price
        change.notes.extend(handler.cost_notes(values, self.observed.offers))
        hours = handler.max_hours(values)
        if price is not None and hours is not None:
            change.worst_case_cost = round(price * hours, 4)

    # -- removals --------------------------------------------------------------------------

    def plan_removal(self, address: str, reason: str, drift: str | None) -> None:
        entry = self.state.resources[address]
        handler = HANDLERS.get(entry.kind)
        name = address.partition(".")[2]
        change = ResourceChange(
            address=address,
            kind=entry.kind,
            name=name,
            action=Action.delete,
            reason=reason,
            remote_id=entry.remote_id,
            remote_name=entry.remote_name,
            drift=drift,
        )
        self.decided[address] = change
        if handler is None:
            self.errors.append(
                f"{address}: the state has kind {entry.kind!r}, which this dumont does not "
                "know; upgrade dumont-plan or `dumont state rm` it"
            )
            return
        live = self.live_index[entry.kind].get(entry.remote_id or "")
        change.observed_fingerprint = self.observed_fingerprint(handler, live)
        resource = self.stack.resources.get(address)
        protected = entry.prevent_destroy
        if resource is not None:
            lifecycle = handler.controls(resource.spec).get("lifecycle") or {}
            protected = bool(lifecycle.get("prevent_destroy"))
        if live is None:
            change.action = Action.forget
            change.status = "gone"
            change.reason = f"{reason}; already gone from the server"
            return
        change.status = handler.status(live)
        if not handler.needs_delete(live):
            change.action = Action.forget
            change.reason = f"{reason}; {change.status}, nothing to stop"
            return
        if protected:
            where = "the spec" if resource is not None else "the state (set at its last apply)"
            self.errors.append(
                f"{address} has lifecycle.prevent_destroy in {where} and would be deleted; "
                "set prevent_destroy: false and apply first, or `dumont state rm "
                f"{address}` to stop managing it without deleting it"
            )
        change.hourly_saving = handler.live_hourly(live)

    def observed_fingerprint(
        self, handler: RegisteredHandler, live: WireModel | None
    ) -> str | None:
        """The change's observed fingerprint, when the plan keeps them (options.fingerprints)."""
        return observed_fingerprint(handler, live) if self.options.fingerprints else None

    # -- references and secrets ------------------------------------------------------------

    def resolve(self, ref: Ref, where: str) -> Any:
        """A reference's value at plan time, or UNKNOWN when its target gets a new id."""
        target = ref.address
        attr = ref.attr or "id"
        decided = self.decided.get(target)
        if decided is not None and decided.action not in STABLE:
            return UNKNOWN
        entry = self.state.resources.get(target)
        remote_id = decided.remote_id if decided is not None else None
        remote_id = remote_id or (entry.remote_id if entry else None)
        if remote_id is None:
            return UNKNOWN
        if attr == "id":
            return id_value(remote_id)
        if attr == "name":
            return (decided.remote_name if decided else None) or (
                entry.remote_name if entry else UNKNOWN
            )
        handler = HANDLERS.get(ref.kind)
        live = self.live_index.get(ref.kind, {}).get(remote_id)
        if handler is None or live is None:
            return UNKNOWN
        value = handler.outputs(live).get(attr)
        return UNKNOWN if value is None else value

    def secret_hash(self, name: str, where: str) -> str:
        value = self.options.secret_hashes.get(name)
        if value is None:
            resource = self.stack.resources.get(where)
            at = f"{resource.source} " if resource is not None and resource.source else ""
            message = (
                f"{at}{where}: secret {name} is not set; export {name}=... (or "
                f"DUMONT_SECRET_{name}) or add it to .dumont/secrets.env (mode 0600)"
            )
            if message not in self.missing_secrets:  # a set: errors is a list
                self.missing_secrets.add(message)
                self.errors.append(message)
            return "missing"
        return value

    # -- ordering --------------------------------------------------------------------------

    def link_dependencies(self, graph: dict[str, list[str]]) -> None:
        """depends_on: dependencies first; removals: dependents' removals first."""
        changes = self.decided
        removing = {a: graph.get(a, []) for a, c in changes.items() if c.action in REMOVALS}
        needed_by = reverse(removing)  # a removal -> the removals that depend on it
        for address, change in changes.items():
            if change.action in REMOVALS:
                change.depends_on = sorted(a for a in needed_by[address] if a != address)
            else:
                change.depends_on = sorted(d for d in graph.get(address, []) if d in changes)
        self.plan.changes = list(changes.values())
        self.plan.changes.sort(key=lambda c: (c.action in REMOVALS, 0))
        if self.options.destroy:
            self.plan.changes.reverse()


__all__ = ["PlanOptions", "build_plan", "canonical_json"]


FAILED_RUNS = frozenset({"failed", "cancelled", "timeout"})


def create_attributes(
    handler: RegisteredHandler, values: dict[str, Any], desired: dict[str, Any]
) -> dict[str, Any]:
    """What a create sends, for the plan: every field given a value (an empty one is left
    out), a secret or a value holding one as SENSITIVE, a reference to what this plan changes
    as UNKNOWN."""
    secret_fields = handler.field_names(FieldClass.secret)
    out: dict[str, Any] = {}
    for name, value in values.items():
        if value is None or value == [] or value == {}:
            continue
        if name in secret_fields or has_secret(value):
            out[name] = SENSITIVE
        else:
            shown = desired.get(name, value)
            out[name] = UNKNOWN if has_unknown(shown) else shown
    return out


def changed_references(written: Any, applied: Any) -> list[str]:
    """The resources whose references changed a value whose text did not change: `written`
    (`"eval ${instance.box.id}"`) still matches `applied` (`"eval 301"`) with each reference
    read as a wildcard. [] when the text changed, or for a value with no reference."""
    if not isinstance(written, str) or not isinstance(applied, str) or "${" not in written:
        return []
    refs = [r for r in refs_in(written) if r.kind != "secret"]
    if not refs:
        return []
    parts, at = [], 0
    for match in REF_RE.finditer(written):
        parts += [re.escape(written[at : match.start()]), "(.+?)"]
        at = match.end()
    parts.append(re.escape(written[at:]))
    found = re.fullmatch("".join(parts), applied, re.S)
    return sorted({r.address for r in refs}) if found else []
