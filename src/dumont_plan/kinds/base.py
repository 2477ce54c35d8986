"""The one small interface every kind implements, and the defaults most kinds share.

The engine never looks inside a kind: `observe` calls `list_live`, `build_plan` reads the field
table and asks `decide`, `apply` calls `create` / `update` / `delete` and waits with
`wait_done` / `is_failed`. A new kind (fine-tunes, serverless, spot) is one handler in
`kinds.registry.HANDLERS` plus its spec model.

Hooks `apply` uses, per action of a `ResourceChange`:

    create, run        handler.create(client, body, idempotency_key) -> live object
    replace            handler.delete(client, old_id, live) then handler.create(...)
    update/pause/resume handler.update(client, remote_id, values, changed_fields) -> live | None
    delete             handler.delete(client, remote_id, live)   (a job: cancel if still active)
    adopt / forget     ledger only, no API call
    wait               wait_for(fetch=lambda: handler.get(client, id),
                                done=lambda o: handler.wait_done(o, handler.wait_target(spec)),
                                failed=handler.is_failed)

`body` comes from `kinds.resolve.resolve_body` (references and secrets filled in just before the
request; the values are never stored).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel

from dumont_plan.client import DumontClient
from dumont_plan.plan.model import Action, FieldChange
from dumont_plan.spec.stack import remote_name as spec_remote_name


class FieldClass(Enum):
    identity = "identity"  # names the object (set by dumont, never diffed)
    updatable = "updatable"  # changed in place (update)
    replace = "replace"  # immutable: a change replaces the resource (a job: a new run)
    server_default = "server_default"  # unset in the spec: the live value is ignored
    output = "output"  # set by the server; never diffed
    secret = "secret"  # compared by salted hash, never shown
    control = "control"  # dumont's own (run_policy, wait, lifecycle, depends_on): not sent


# The classes of the fields dumont sends, records in the ledger and diffs.
DESIRED_CLASSES = frozenset(
    {FieldClass.updatable, FieldClass.replace, FieldClass.server_default, FieldClass.secret}
)

CLASS_HELP: dict[FieldClass, str] = {
    FieldClass.identity: "names the object on the server; set by dumont",
    FieldClass.updatable: "changed in place (~ update)",
    FieldClass.replace: "a change replaces the resource (-/+ replace)",
    FieldClass.server_default: "when unset, the server's choice is kept and never diffed",
    FieldClass.output: "reported by the server; never diffed",
    FieldClass.secret: "compared by salted hash; shown as (sensitive)",
    FieldClass.control: "read by dumont itself; never sent to the API",
}


@dataclass(frozen=True)
class Situation:
    """Everything `decide` may look at for one resource that is in the spec and the ledger."""

    address: str
    values: dict[str, Any]  # desired values (references resolved when known, secrets hashed)
    controls: dict[str, Any]  # run_policy, wait, lifecycle, ... as written
    live: dict[str, Any] | None  # None: the object is gone from the server
    changes: list[FieldChange]  # desired vs last applied (ignore_changes already left out)
    forced_replace: bool = False  # --replace ADDR
    allow_restart: bool = False  # --allow-restart
    now: datetime | None = None
    price: float | None = None  # $/h of this resource's desired shape, when known


@dataclass
class Decision:
    action: Action
    reason: str = ""
    drift: str | None = None  # changed | gone | lifecycle | orphan
    error: str | None = None  # a plan error naming the address and the fix
    notes: list[str] = field(default_factory=list)


class KindHandler(Protocol):
    """What the engine needs to know and do for one kind."""

    kind: str  # address prefix: "job"
    section: str  # spec section: "jobs"
    spec_model: type[BaseModel]
    fields: dict[str, FieldClass]  # the per-kind table printed by `dumont explain`
    unordered: frozenset[str]  # list fields compared as sets
    notes: dict[str, str]  # field -> extra words for `dumont explain`

    def remote_name(self, project: str, name: str, values: Mapping[str, Any]) -> str:
        """The name the object carries on the server (used to adopt after a crash)."""
        ...

    def desired_values(self, project: str, name: str, spec: BaseModel) -> dict[str, Any]:
        """The diffed and sent fields (no control fields), with dumont's own defaults filled."""
        ...

    def controls(self, spec: BaseModel) -> dict[str, Any]: ...

    def list_live(self, client: DumontClient) -> list[dict[str, Any]]:
        """Every live object of this kind with few paged list calls (never one GET each)."""
        ...

    def live_id(self, live: Mapping[str, Any]) -> str: ...

    def live_name(self, live: Mapping[str, Any]) -> str | None: ...

    def live_created(self, live: Mapping[str, Any]) -> str: ...

    def live_values(self, live: Mapping[str, Any]) -> dict[str, Any]:
        """Desired-side fields the server echoes (compared for `changed` drift)."""
        ...

    def normalize(self, field: str, value: Any) -> Any: ...

    def status(self, live: Mapping[str, Any]) -> str:
        """The lifecycle status, normalised (e.g. instances: running | paused | loading ...)."""
        ...

    def is_active(self, live: Mapping[str, Any]) -> bool: ...

    def is_finished(self, live: Mapping[str, Any]) -> bool: ...

    def is_failed(self, live: Mapping[str, Any]) -> bool: ...

    def observed_view(self, live: Mapping[str, Any] | None) -> dict[str, Any]:
        """The live fields that decide the plan (a saved plan is stale when they move)."""
        ...

    def outputs(self, live: Mapping[str, Any]) -> dict[str, Any]:
        """Attributes other resources may reference as `${kind.name.attr}`."""
        ...

    def decide(self, situation: Situation) -> Decision: ...

    def live_hourly(self, live: Mapping[str, Any]) -> float | None:
        """What the live object costs per hour now (None when not billed or unknown)."""
        ...

    def price_query(self, values: Mapping[str, Any]) -> dict[str, Any] | None:
        """The `GET /instances/offers` filters that price this resource (None: free)."""
        ...

    def hourly_price(
        self, values: Mapping[str, Any], offers: Sequence[Mapping[str, Any]]
    ) -> float | None: ...

    def max_hours(self, values: Mapping[str, Any]) -> float | None:
        """The longest it can run (a job's timeout), for the worst-case cost; None: unbounded."""
        ...

    def request_body(self, project: str, name: str, values: dict[str, Any]) -> dict[str, Any]:
        """The create request for resolved values (references and secrets already filled)."""
        ...

    def create(
        self, client: DumontClient, body: dict[str, Any], idempotency_key: str
    ) -> dict[str, Any]: ...

    def update(
        self,
        client: DumontClient,
        remote_id: str,
        values: dict[str, Any],
        changed: Sequence[str],
    ) -> dict[str, Any] | None: ...

    def delete(
        self, client: DumontClient, remote_id: str, live: Mapping[str, Any] | None = None
    ) -> None: ...

    def get(self, client: DumontClient, remote_id: str) -> dict[str, Any]: ...

    def wait_target(self, controls: Mapping[str, Any]) -> str:
        """`none`, `running` or `completed`: what apply waits for after creating it."""
        ...

    def wait_done(self, live: Mapping[str, Any], target: str) -> bool: ...


class BaseHandler:
    """Defaults shared by the kinds: field-table driven decisions and generic live reads."""

    kind: ClassVar[str] = ""
    section: ClassVar[str] = ""
    spec_model: ClassVar[type[BaseModel]]
    fields: ClassVar[dict[str, FieldClass]] = {}
    unordered: ClassVar[frozenset[str]] = frozenset()
    notes: ClassVar[dict[str, str]] = {}
    # Fields where an unset (None) desired value means "the server's choice": never diffed then.
    unset_is_any: ClassVar[frozenset[str]] = frozenset()
    _names_cache: ClassVar[dict[frozenset[FieldClass], frozenset[str]]]

    def controls(self, spec: BaseModel) -> dict[str, Any]:
        keys = self.field_names(FieldClass.control)
        return {k: v for k, v in spec.model_dump(mode="json").items() if k in keys}

    def desired_values(self, project: str, name: str, spec: BaseModel) -> dict[str, Any]:
        keys = self.field_names(*DESIRED_CLASSES)
        return {k: v for k, v in spec.model_dump(mode="json").items() if k in keys}

    @classmethod
    def field_names(cls, *classes: FieldClass) -> frozenset[str]:
        """The names of the fields of these classes (once per kind: plans ask per resource)."""
        cache = cls.__dict__.get("_names_cache")
        if cache is None:
            cache = {}
            cls._names_cache = cache
        wanted = frozenset(classes)
        names = cache.get(wanted)
        if names is None:
            names = cache[wanted] = frozenset(k for k, c in cls.fields.items() if c in wanted)
        return names

    def remote_name(self, project: str, name: str, values: Mapping[str, Any]) -> str:
        return spec_remote_name(project, self.kind, name)

    def live_id(self, live: Mapping[str, Any]) -> str:
        return str(live.get("id"))

    def live_name(self, live: Mapping[str, Any]) -> str | None:
        value = live.get("name")
        return str(value) if value is not None else None

    def status(self, live: Mapping[str, Any]) -> str:
        return str(live.get("status") or "unknown")

    def is_active(self, live: Mapping[str, Any]) -> bool:
        return not self.is_finished(live)

    def is_finished(self, live: Mapping[str, Any]) -> bool:
        return False

    def is_failed(self, live: Mapping[str, Any]) -> bool:
        return False

    def live_created(self, live: Mapping[str, Any]) -> str:
        return str(live.get("created_at") or live.get("start_date") or "")

    def live_values(self, live: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def normalize(self, field: str, value: Any) -> Any:
        return value

    def outputs(self, live: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(live)
        out["id"] = id_value(self.live_id(live))
        out["name"] = self.live_name(live)
        return out

    def live_hourly(self, live: Mapping[str, Any]) -> float | None:
        return None

    def live_price(self, live: Mapping[str, Any]) -> float | None:
        """The live object's $/h whatever its state (what a resume would cost)."""
        return None

    def needs_delete(self, live: Mapping[str, Any]) -> bool:
        """Whether removing it takes an API call (a finished job has nothing to stop)."""
        return True

    def describe(self, values: Mapping[str, Any]) -> str:
        """A few words for a create line (`RTX 4090, spot`)."""
        return ""

    def max_hours(self, values: Mapping[str, Any]) -> float | None:
        return None

    # -- what each kind must provide (see KindHandler) ---------------------------------------

    def list_live(self, client: DumontClient) -> list[dict[str, Any]]:
        raise NotImplementedError

    def observed_view(self, live: Mapping[str, Any] | None) -> dict[str, Any]:
        raise NotImplementedError

    def price_query(self, values: Mapping[str, Any]) -> dict[str, Any] | None:
        return None

    def hourly_price(
        self, values: Mapping[str, Any], offers: Sequence[Mapping[str, Any]]
    ) -> float | None:
        return None

    def request_body(self, project: str, name: str, values: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def create(
        self, client: DumontClient, body: dict[str, Any], idempotency_key: str
    ) -> dict[str, Any]:
        raise NotImplementedError

    def update(
        self,
        client: DumontClient,
        remote_id: str,
        values: dict[str, Any],
        changed: Sequence[str],
    ) -> dict[str, Any] | None:
        raise NotImplementedError

    def delete(
        self, client: DumontClient, remote_id: str, live: Mapping[str, Any] | None = None
    ) -> None:
        raise NotImplementedError

    def get(self, client: DumontClient, remote_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def wait_target(self, controls: Mapping[str, Any]) -> str:
        return str(controls.get("wait") or "none")

    def wait_done(self, live: Mapping[str, Any], target: str) -> bool:
        return True

    def decide(self, situation: Situation) -> Decision:
        """Gone -> create; failed -> replace; a `replace` field changed -> replace; else update."""
        s = situation
        if s.live is None:
            return Decision(Action.create, "deleted outside dumont", drift="gone")
        if self.is_failed(s.live):
            status = self.status(s.live)
            return Decision(Action.replace, f"found {status}", drift="lifecycle")
        if s.forced_replace:
            return Decision(Action.replace, "--replace")
        forcing = [c.field for c in s.changes if c.forces_replace]
        drift = "changed" if any(c.drift for c in s.changes) else None
        if forcing:
            return Decision(Action.replace, "forced by " + ", ".join(forcing), drift=drift)
        if s.changes:
            return Decision(Action.update, ", ".join(c.field for c in s.changes), drift=drift)
        return Decision(Action.noop)


def id_value(remote_id: str) -> Any:
    """A remote id as the API spells it: instance ids are integers, job ids text.

    `${instance.box.id}` then resolves to a number both at plan time (from the ledger's
    text) and at apply time (from the live object), so the two always compare equal.
    """
    return int(remote_id) if remote_id.isdigit() else remote_id


def format_elapsed(seconds: float) -> str:
    """`3h12m`, `4m05s`, `12s`."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def parse_time(text: Any) -> datetime | None:
    """An ISO timestamp from the API (naive means UTC), or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value
