"""Desired values as the ledger keeps them, their fingerprints, and saved-plan staleness. Pure.

A resource's *materialised* values are its desired values with

- `${kind.name.attr}` references replaced by what they point at (at plan time: the ledger or
  live value when that resource keeps its id, else `(known after apply)`);
- `${secret.NAME}` kept as text with a salted hash of the value appended
  (`${secret.HF_TOKEN@sha256:...}`), so a changed secret changes the value;
- every field of class `secret` replaced by one salted hash of the whole value.

That is what `applied_spec` holds and what a plan's `desired_fingerprint` hashes: no secret
value ever.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dumont_plan.kinds.base import FieldClass, RegisteredHandler
from dumont_plan.plan.model import UNKNOWN, Action, Plan
from dumont_plan.secrets import fingerprint_secret
from dumont_plan.spec.common import REF_RE
from dumont_plan.spec.refs import SECRET_KIND, Ref, substitute_refs
from dumont_plan.spec.stack import Resource
from dumont_plan.state.ledger import DesiredRecord
from dumont_plan.wire_models import WireModel

SECRET_MARK = "${secret."
Resolver = Callable[[Ref], Any]
SecretHasher = Callable[[str], str]  # NAME -> salted hash of its value
_CONTAINERS = (dict, list)


# json.dumps with these arguments builds an encoder per call: plans make a few per resource.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def canonical_json(value: Any) -> str:
    return _CANONICAL.encode(value)


def fingerprint(value: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(value).encode()).hexdigest()


def has_secret(value: Any) -> bool:
    return SECRET_MARK in canonical_json(value)


def has_unknown(value: Any) -> bool:
    return UNKNOWN in canonical_json(value)


def mask_secrets(value: Any, secret_hash: SecretHasher) -> Any:
    """`${secret.X}` -> `${secret.X@<salted hash of X's value>}` in every string."""
    if isinstance(value, dict):
        return {k: mask_secrets(v, secret_hash) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v, secret_hash) for v in value]
    if not isinstance(value, str) or SECRET_MARK not in value:
        return value

    def _one(match: Any) -> str:
        if match.group(1) != SECRET_KIND or match.group(3) is not None:
            return str(match.group(0))
        name = str(match.group(2))
        return "${secret." + name + "@" + secret_hash(name) + "}"

    return REF_RE.sub(_one, value)


def materialize(
    handler: RegisteredHandler,
    values: Mapping[str, Any],
    *,
    resolve: Resolver,
    secret_hash: SecretHasher,
    salt: str,
) -> dict[str, Any]:
    """The values as recorded and compared (see the module doc)."""
    out: dict[str, Any] = {}
    secret_fields = handler.field_names(FieldClass.secret)
    for field, value in values.items():
        kind = type(value)
        if kind is str and "${" not in value:
            masked = value  # most fields: plain text
        elif kind is list and all(type(v) is str and "${" not in v for v in value):
            masked = list(value)  # plain strings (pip_packages, output_paths): nothing to fill
        elif isinstance(value, _CONTAINERS) or (isinstance(value, str) and "${" in value):
            masked = mask_secrets(substitute_refs(value, resolve), secret_hash)
        else:  # a plain value (most fields): neither a reference nor a secret in it
            masked = value
        if field in secret_fields and masked is not None:
            out[field] = fingerprint_secret(canonical_json(masked), salt)
        else:
            out[field] = masked
    return out


def desired_record(
    handler: RegisteredHandler,
    resource: Resource,
    project: str,
    *,
    resolve: Resolver,
    secret_hash: SecretHasher,
    salt: str,
) -> DesiredRecord:
    """What the ledger records for `resource` once applied (no secret values)."""
    values = handler.desired_values(project, resource.name, resource.spec)
    applied = materialize(handler, values, resolve=resolve, secret_hash=secret_hash, salt=salt)
    controls = handler.controls(resource.spec)
    lifecycle = controls.get("lifecycle") or {}
    return DesiredRecord(
        applied_spec=applied,
        prevent_destroy=bool(lifecycle.get("prevent_destroy")),
        depends_on=sorted(resource.refs),
    )


def observed_fingerprint(
    handler: RegisteredHandler,
    live: WireModel | None,
    *,
    same_name: list[str] | None = None,
) -> str:
    """Hash of the live fields the plan's decision rests on (`same_name`: for creates)."""
    view = handler.observed_view(live)
    if same_name is not None:
        view = {**view, "same_name": sorted(same_name)}
    return fingerprint(view)


def live_by_id(handler: RegisteredHandler, objects: Sequence[WireModel]) -> dict[str, WireModel]:
    return {handler.live_id(o): o for o in objects}


def same_name_ids(
    handler: RegisteredHandler, objects: Sequence[WireModel], remote_name: str | None
) -> list[str]:
    if not remote_name:
        return []
    return sorted(handler.live_id(o) for o in objects if handler.live_name(o) == remote_name)


def stale_resources(
    plan: Plan,
    live: Mapping[str, Sequence[WireModel]],
    handlers: Mapping[str, RegisteredHandler],
) -> list[str]:
    """Addresses of a saved plan whose live object changed since the plan was made.

    Compares each actionable change's `observed_fingerprint` with the same view of `live`
    (objects by kind, e.g. `Observed.live`); a create is stale when an object of that name
    appeared. No-ops are not checked (apply does nothing for them).
    """
    stale = []
    for change in plan.actionable():
        handler = handlers.get(change.kind)
        if handler is None or change.observed_fingerprint is None:
            continue
        objects = list(live.get(change.kind, []))
        if change.action is Action.create:
            now = observed_fingerprint(
                handler, None, same_name=same_name_ids(handler, objects, change.remote_name)
            )
        else:
            current = live_by_id(handler, objects).get(change.remote_id or "")
            now = observed_fingerprint(handler, current)
        if now != change.observed_fingerprint:
            stale.append(change.address)
    return stale
