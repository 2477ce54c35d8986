"""Fill a resource's references and secrets just before its request is sent (apply time).

    outputs = outputs_from(ledger.state, observed)          # address -> {id, name, live fields}
    resolved = resolve_body(resource, project, outputs, store, ledger.state.salt)
    live = ops.create(client, resolved.body, key)           # body holds secret values: never log
    outputs[resource.address] = handler.outputs(live)       # for the resources that follow
    ledger.finish_op(op, remote_id=..., record=resolved.record)   # hashes only

`${kind.name.attr}` takes the value from `outputs` (the live object of an applied dependency);
`${secret.NAME}` reads the secret store. The values are never stored: `record` holds what the
ledger keeps (references resolved, secrets as salted hashes), computed like the plan does, so a
plan right after the apply finds nothing to change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dumont_plan.errors import ApplyError, PlanError
from dumont_plan.kinds.base import id_value
from dumont_plan.kinds.registry import handler_for
from dumont_plan.plan.fingerprint import desired_record
from dumont_plan.plan.model import Observed
from dumont_plan.secrets import SecretStore, fingerprint_secret, resolve_secrets, secret_names
from dumont_plan.spec.refs import Ref, substitute_refs
from dumont_plan.spec.stack import Resource
from dumont_plan.state.ledger import DesiredRecord, LedgerState

Outputs = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Resolved:
    body: dict[str, Any]  # the create request; holds secret values: never log or store it
    values: dict[str, Any]  # desired values, filled (for handler.update)
    record: DesiredRecord  # what the ledger records after success (no secret values)
    secrets: list[str]  # the secret values used, for redaction of errors and logs


def outputs_from(state: LedgerState, observed: Observed) -> dict[str, dict[str, Any]]:
    """What `${kind.name.attr}` can read before apply changes anything: ledger + live objects."""
    out: dict[str, dict[str, Any]] = {}
    for address, entry in state.resources.items():
        if not entry.remote_id:
            continue
        values: dict[str, Any] = {"id": id_value(entry.remote_id), "name": entry.remote_name}
        try:
            handler = handler_for(entry.kind)
        except PlanError:  # a kind this dumont does not know: no live attributes
            out[address] = values
            continue
        for live in observed.objects(entry.kind):
            if handler.live_id(live) == entry.remote_id:
                values = {**handler.outputs(live), **values}
                break
        out[address] = values
    return out


def _resolver(address: str, outputs: Outputs) -> Any:
    def resolve(ref: Ref) -> Any:
        attr = ref.attr or "id"
        target = outputs.get(ref.address)
        if target is None:
            raise ApplyError(
                f"{address}: {ref.text} has no value: {ref.address} has not been applied",
                f"apply {ref.address} first (or drop it from --exclude)",
            )
        value = target.get(attr)
        if value is None:
            raise ApplyError(
                f"{address}: {ref.text} has no value: {ref.address} reports no {attr!r} yet",
                f"wait for it (`wait: running` on {ref.address}) before this resource starts",
            )
        return value

    return resolve


def resolve_body(
    resource: Resource,
    project: str,
    outputs: Outputs,
    store: SecretStore,
    salt: str,
) -> Resolved:
    """The request body of `resource` with references and secrets filled, and its record."""
    handler = handler_for(resource.kind)
    values = handler.desired_values(project, resource.name, resource.spec)
    resolve = _resolver(resource.address, outputs)
    names = sorted(secret_names(values))
    secret_values = {name: store.get(name, resource.address) for name in names}
    filled = substitute_refs(values, resolve)
    filled = resolve_secrets(filled, {}, (), where=resource.address, store=store)
    record = desired_record(
        handler,
        resource,
        project,
        resolve=resolve,
        secret_hash=lambda name: fingerprint_secret(secret_values[name], salt),
        salt=salt,
    )
    body = handler.request_body(project, resource.name, filled)
    if handler.secrets_field and secret_values:  # the server masks these and stores none
        body[handler.secrets_field] = dict(secret_values)
    return Resolved(body=body, values=filled, record=record, secrets=list(secret_values.values()))
