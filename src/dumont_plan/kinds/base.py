"""The pure side of a kind: its field table and decisions, behind the `KindHandler` Protocol.

A kind is two objects (see "How to add a kind" in the README):

- a *handler* (this Protocol; `BaseHandler` gives the defaults): pure, no I/O. `plan/` reads
  its field table, asks `decide`, prices with `price_query` / `hourly_price`; apply and
  observe use its status predicates (`is_failed`, `wait_done` ...) and `outputs`.
- its *ops* (`kinds.ops.KindOps`): the API calls (`list_live`, `create`, `update`,
  `delete`, `get`), used by observe and apply only.

`kinds.registry.HANDLERS` holds the handlers, typed as `KindHandler`: a kind missing a method
fails mypy there. Nothing here imports the client, the wizard, apply or plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any, ClassVar, Generic, Protocol, TypeAlias, TypeVar

from pydantic import BaseModel

from dumont_plan.kinds.decision import Action, Decision, Situation
from dumont_plan.spec.stack import remote_name as spec_remote_name
from dumont_plan.wire_models import Offer, WireModel

# A kind's live object: the read model its API returns (`wire_models.Job`, `Instance` ...).
Live = TypeVar("Live", bound=WireModel)
Live_contra = TypeVar("Live_contra", bound=WireModel, contravariant=True)


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


class KindHandler(Protocol[Live_contra]):
    """What plan, observe and apply know of one kind besides its API calls. Pure.

    Generic in the kind's live object (`KindHandler[Job]`): the registry holds handlers of
    different kinds, each given only the objects of its own kind.
    """

    @property
    def kind(self) -> str:
        """The address prefix: `job`."""
        ...

    @property
    def section(self) -> str:
        """The spec section: `jobs`."""
        ...

    @property
    def spec_model(self) -> type[BaseModel]: ...

    @property
    def live_model(self) -> type[WireModel]:
        """The read model of its live objects (golden cases validate observed dicts with it)."""
        ...

    @property
    def fields(self) -> dict[str, FieldClass]:
        """The per-kind table printed by `dumont explain`."""
        ...

    @property
    def unordered(self) -> frozenset[str]:
        """List fields compared as sets."""
        ...

    @property
    def unset_is_any(self) -> frozenset[str]:
        """Fields where an unset (None) desired value means "the server's choice"."""
        ...

    @property
    def notes(self) -> dict[str, str]:
        """field -> extra words for `dumont explain`."""
        ...

    @property
    def runs_to_completion(self) -> bool:
        """Whether its objects run to an end (a job), not until deleted (an instance): apply
        may wait for `completed`, replaces an active one only with `--allow-restart`, and
        keeps a failed one after an interrupted create (it is the result, not a broken one)."""
        ...

    @property
    def secrets_field(self) -> str | None:
        """The create request's field that tells the server which values are secret (name ->
        value of every `${secret.NAME}` used), so it masks and never stores them; None: none."""
        ...

    @property
    def governs(self) -> tuple[str, str] | None:
        """(field, kind) when the resource changes the cost of another one it names by id in
        that field (a serverless policy: `instance`, `${instance.NAME.id}`); None: none."""
        ...

    def field_names(self, *classes: FieldClass) -> frozenset[str]: ...

    # -- desired values ----------------------------------------------------------------------

    def remote_name(self, project: str, name: str, values: Mapping[str, Any]) -> str:
        """The name the object carries on the server (used to adopt after a crash)."""
        ...

    def desired_values(self, project: str, name: str, spec: BaseModel) -> dict[str, Any]:
        """The diffed and sent fields (no control fields), with dumont's own defaults filled."""
        ...

    def desired_from(self, project: str, name: str, dumped: Mapping[str, Any]) -> dict[str, Any]:
        """desired_values of a spec already serialised (`spec.model_dump(mode="json")`): the
        planner serialises each spec once for its digest and reads both sides from that."""
        ...

    def controls(self, spec: BaseModel) -> dict[str, Any]: ...

    def controls_from(self, dumped: Mapping[str, Any]) -> dict[str, Any]:
        """controls of a spec already serialised (as desired_from)."""
        ...

    def normalize(self, field: str, value: Any) -> Any: ...

    def request_body(self, project: str, name: str, values: dict[str, Any]) -> dict[str, Any]:
        """The create request for resolved values (references and secrets already filled)."""
        ...

    def describe(self, values: Mapping[str, Any]) -> str:
        """A few words for a create line (`RTX 4090, spot`)."""
        ...

    def when_text(self, values: Mapping[str, Any], now: datetime) -> str | None:
        """When a new run starts, for its plan line (`next run 2026-12-06 02:00 UTC`)."""
        ...

    def start_problem(self, values: Mapping[str, Any], now: datetime) -> str | None:
        """Why a new run of `values` cannot start (a plan error), or None."""
        ...

    # -- live objects (as the ops' `list_live` / `get` return them) ---------------------------

    def live_id(self, live: Live_contra) -> str: ...

    def live_name(self, live: Live_contra) -> str | None: ...

    def live_created(self, live: Live_contra) -> str: ...

    def live_values(self, live: Live_contra) -> dict[str, Any]:
        """Desired-side fields the server echoes (compared for `changed` drift)."""
        ...

    def status(self, live: Live_contra) -> str:
        """The lifecycle status, normalised (e.g. instances: running | paused | loading ...)."""
        ...

    def is_active(self, live: Live_contra) -> bool: ...

    def is_finished(self, live: Live_contra) -> bool: ...

    def is_failed(self, live: Live_contra) -> bool: ...

    def needs_delete(self, live: Live_contra) -> bool:
        """Whether removing it takes an API call (a finished job has nothing to stop)."""
        ...

    def observed_view(self, live: Live_contra | None) -> dict[str, Any]:
        """The live fields that decide the plan (a saved plan is stale when they move)."""
        ...

    def outputs(self, live: Live_contra) -> dict[str, Any]:
        """Attributes other resources may reference as `${kind.name.attr}`."""
        ...

    # -- decisions, waits and cost ------------------------------------------------------------

    def decide(self, situation: Situation[Live_contra]) -> Decision: ...

    def wait_target(self, controls: Mapping[str, Any]) -> str:
        """`none`, `running` or `completed`: what apply waits for after creating it."""
        ...

    def wait_done(self, live: Live_contra, target: str) -> bool: ...

    def live_hourly(self, live: Live_contra) -> float | None:
        """What the live object costs per hour now (None when not billed or unknown)."""
        ...

    def live_price(self, live: Live_contra) -> float | None:
        """The live object's $/h whatever its state (what a resume would cost)."""
        ...

    def price_query(self, values: Mapping[str, Any]) -> dict[str, Any] | None:
        """The `GET /instances/offers` filters that price this resource (None: free)."""
        ...

    def hourly_price(self, values: Mapping[str, Any], offers: Sequence[Offer]) -> float | None: ...

    def cost_notes(self, values: Mapping[str, Any], offers: Sequence[Offer]) -> list[str]:
        """Words on the price of what a change starts, for its plan line (e.g. a spot bid
        beside the on-demand price)."""
        ...

    def max_hours(self, values: Mapping[str, Any]) -> float | None:
        """The longest it can run (a job's timeout), for the worst-case cost; None: unbounded."""
        ...

    def cost_effect(self, values: Mapping[str, Any], governed_hourly: float | None) -> str | None:
        """A plan note on what it does to the $/h of what it `governs` (whose $/h is
        `governed_hourly` when known); None: nothing to say."""
        ...

    def governed_live_values(self, live: Live_contra) -> dict[str, Any]:
        """How the live fields of what it `governs` read while `live` governs them (a
        serverless policy: its instance's `state` is `running` even while paused by it)."""
        ...


# The registry's view of a handler: whichever kind, it is only ever given objects of its kind
# (observe files each object under its kind), so the engine holds handlers of any live type.
RegisteredHandler: TypeAlias = KindHandler[Any]


class BaseHandler(Generic[Live]):
    """Defaults shared by the kinds: field-table driven decisions and generic live reads."""

    kind: ClassVar[str] = ""
    section: ClassVar[str] = ""
    spec_model: ClassVar[type[BaseModel]]
    live_model: ClassVar[type[WireModel]]
    fields: ClassVar[dict[str, FieldClass]] = {}
    unordered: ClassVar[frozenset[str]] = frozenset()
    notes: ClassVar[dict[str, str]] = {}
    runs_to_completion: ClassVar[bool] = False
    secrets_field: ClassVar[str | None] = None
    governs: ClassVar[tuple[str, str] | None] = None
    # Fields where an unset (None) desired value means "the server's choice": never diffed then.
    unset_is_any: ClassVar[frozenset[str]] = frozenset()
    _names_cache: ClassVar[dict[tuple[FieldClass, ...], frozenset[str]]]

    def controls(self, spec: BaseModel) -> dict[str, Any]:
        return self.controls_from(spec.model_dump(mode="json"))

    def controls_from(self, dumped: Mapping[str, Any]) -> dict[str, Any]:
        keys = self.field_names(FieldClass.control)
        return {k: v for k, v in dumped.items() if k in keys}

    def desired_values(self, project: str, name: str, spec: BaseModel) -> dict[str, Any]:
        return self.desired_from(project, name, spec.model_dump(mode="json"))

    def desired_from(self, project: str, name: str, dumped: Mapping[str, Any]) -> dict[str, Any]:
        """The desired fields of a serialised spec; a kind that fills defaults of its own
        overrides this one (desired_values serialises, then calls it)."""
        keys = self.field_names(*DESIRED_CLASSES)
        return {k: v for k, v in dumped.items() if k in keys}

    @classmethod
    def field_names(cls, *classes: FieldClass) -> frozenset[str]:
        """The names of the fields of these classes (once per kind: plans ask per resource)."""
        cache = cls.__dict__.get("_names_cache")
        if cache is None:
            cache = {}
            cls._names_cache = cache
        names = cache.get(classes)  # keyed by the tuple as passed: no set built per call
        if names is None:
            wanted = frozenset(classes)
            names = cache[classes] = frozenset(k for k, c in cls.fields.items() if c in wanted)
        return names

    def remote_name(self, project: str, name: str, values: Mapping[str, Any]) -> str:
        return spec_remote_name(project, self.kind, name)

    def live_id(self, live: Live) -> str:
        return str(live.raw.get("id"))

    def live_name(self, live: Live) -> str | None:
        value = live.raw.get("name")
        return str(value) if value is not None else None

    def status(self, live: Live) -> str:
        return str(live.raw.get("status") or "unknown")

    def is_active(self, live: Live) -> bool:
        return not self.is_finished(live)

    def is_finished(self, live: Live) -> bool:
        return False

    def is_failed(self, live: Live) -> bool:
        return False

    def live_created(self, live: Live) -> str:
        return str(live.raw.get("created_at") or live.raw.get("start_date") or "")

    def live_values(self, live: Live) -> dict[str, Any]:
        return {}

    def normalize(self, field: str, value: Any) -> Any:
        return value

    def outputs(self, live: Live) -> dict[str, Any]:
        out = dict(live.raw)  # every field the server sent, in its own spelling
        out["id"] = id_value(self.live_id(live))
        out["name"] = self.live_name(live)
        return out

    def live_hourly(self, live: Live) -> float | None:
        return None

    def live_price(self, live: Live) -> float | None:
        """The live object's $/h whatever its state (what a resume would cost)."""
        return None

    def needs_delete(self, live: Live) -> bool:
        """Whether removing it takes an API call (a finished job has nothing to stop)."""
        return True

    def describe(self, values: Mapping[str, Any]) -> str:
        """A few words for a create line (`RTX 4090, spot`)."""
        return ""

    def when_text(self, values: Mapping[str, Any], now: datetime) -> str | None:
        return None

    def start_problem(self, values: Mapping[str, Any], now: datetime) -> str | None:
        return None

    def max_hours(self, values: Mapping[str, Any]) -> float | None:
        return None

    def cost_effect(self, values: Mapping[str, Any], governed_hourly: float | None) -> str | None:
        return None

    def governed_live_values(self, live: Live) -> dict[str, Any]:
        return {}

    # `observed_view` and `request_body` have no default: each kind writes its own, and one
    # that does not is no `KindHandler`, which mypy reports at its line of the registry.

    def price_query(self, values: Mapping[str, Any]) -> dict[str, Any] | None:
        return None

    def hourly_price(self, values: Mapping[str, Any], offers: Sequence[Offer]) -> float | None:
        return None

    def cost_notes(self, values: Mapping[str, Any], offers: Sequence[Offer]) -> list[str]:
        return []

    def wait_target(self, controls: Mapping[str, Any]) -> str:
        return str(controls.get("wait") or "none")

    def wait_done(self, live: Live, target: str) -> bool:
        return True

    def decide(self, situation: Situation[Live]) -> Decision:
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


def cheapest_gpu_price(offers: Sequence[Offer], gpu: str, count: int, spot: bool) -> float | None:
    """The lowest $/h of the offers of `count` × `gpu` (a spot offer's minimum bid when `spot`)."""
    wanted = gpu.strip().casefold()
    prices = []
    for offer in offers:
        if (offer.gpu_name or "").casefold() != wanted or (offer.num_gpus or 1) != count:
            continue
        price = offer.min_bid if spot else None
        if price is None:
            price = offer.dph_total
        if price is not None:
            prices.append(price)
    return min(prices) if prices else None


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
