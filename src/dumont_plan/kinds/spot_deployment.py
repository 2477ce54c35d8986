"""`spot_deployment.*`: an instance bid on the spot market from a template, failed over to a
new machine whenever the market takes its machine back.

The deployment's id is its identity; the instance id is an attribute that changes at each
failover. So a failover is neither drift nor a re-create: the plan shows the same resource
unchanged, with a note "failed over N times". The API changes nothing of a deployment in
place, so every field change replaces it.

    template, max_price, gpu_preference, auto_failover  -> replace (a new deployment)
    state failed (failover gave up)                      -> replace (lifecycle drift)
    instance id changed by a failover                    -> no-op, with a note

Priced from the offers as the server bids: the cheapest minimum bid of a 1-GPU machine (of
`gpu_preference`) at most `max_price`, beside the on-demand price of the same machine;
`max_price` is the worst case per hour. The template's region is not known to the plan, so
it prices the whole market.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel

from dumont_plan.kinds.base import BaseHandler, FieldClass
from dumont_plan.kinds.decision import Action, Decision, Situation
from dumont_plan.offers import compact
from dumont_plan.spec.spot import SpotDeploymentSpec
from dumont_plan.wire_models import Offer, WireModel
from dumont_plan.wire_models.spot import SpotInstance

_R, _C, _O = FieldClass.replace, FieldClass.control, FieldClass.output

SPOT_DEPLOYMENT_FIELDS: dict[str, FieldClass] = {
    "template": _R,
    "max_price": _R,
    "gpu_preference": _R,
    "auto_failover": _R,
    "wait": _C,
    "depends_on": _C,
    "lifecycle": _C,
    "id": _O,
    "instance_id": _O,
    "state": _O,
    "gpu_name": _O,
    "region": _O,
    "bid_price": _O,
    "ssh_host": _O,
    "ssh_port": _O,
    "failover_count": _O,
    "last_failover_at": _O,
}
# The contract's deploy filters (§8.3): a machine with at least this disk and download speed.
MIN_DISK_GB = 20
MIN_INET_DOWN = 100
MOVING_STATES = frozenset({"interrupted", "failover"})


def times(count: int) -> str:
    return "1 time" if count == 1 else f"{count} times"


class SpotDeploymentHandler(BaseHandler[SpotInstance]):
    kind: ClassVar[str] = "spot_deployment"
    section: ClassVar[str] = "spot_deployments"
    spec_model: ClassVar[type[BaseModel]] = SpotDeploymentSpec
    live_model: ClassVar[type[WireModel]] = SpotInstance
    fields: ClassVar[dict[str, FieldClass]] = SPOT_DEPLOYMENT_FIELDS
    unset_is_any: ClassVar[frozenset[str]] = frozenset({"gpu_preference"})
    notes: ClassVar[dict[str, str]] = {
        "template": "`${spot_template.NAME.id}`: a new template makes a new deployment",
        "max_price": "the highest bid; the plan's worst case per hour",
        "gpu_preference": "unset: the cheapest GPU, and the one won is kept",
        "auto_failover": "`dumont spot stop` turns it off on the server: drift, a replace",
        "id": "the deployment's id: it stays the same across failovers",
        "instance_id": "changes at each failover (not drift: the plan notes it)",
    }

    # -- live objects ----------------------------------------------------------------------

    def live_id(self, live: SpotInstance) -> str:
        return live.identity

    def live_name(self, live: SpotInstance) -> str | None:
        return None  # deployments carry no name: an interrupted create is not adopted

    def live_created(self, live: SpotInstance) -> str:
        return live.created_at or ""

    def status(self, live: SpotInstance) -> str:
        return live.state

    def is_failed(self, live: SpotInstance) -> bool:
        return live.is_failed

    def live_values(self, live: SpotInstance) -> dict[str, Any]:
        echoed = {
            "template": live.template_id,
            "max_price": live.max_price,
            "auto_failover": live.auto_failover,
            "gpu_preference": live.gpu_preference,
        }
        return {k: v for k, v in echoed.items() if v is not None}

    def observed_view(self, live: SpotInstance | None) -> dict[str, Any]:
        """Not the instance id: a failover between plan and apply changes nothing planned."""
        if live is None:
            return {"present": False}
        return {
            "present": True,
            "id": live.identity,
            "failed": live.is_failed,
            **self.live_values(live),
        }

    def outputs(self, live: SpotInstance) -> dict[str, Any]:
        out = super().outputs(live)
        out["instance_id"] = live.instance_id
        return out

    def live_hourly(self, live: SpotInstance) -> float | None:
        return None if live.is_failed or live.state == "stopped" else live.bid_price

    def live_price(self, live: SpotInstance) -> float | None:
        return live.bid_price

    def normalize(self, field: str, value: Any) -> Any:
        if field == "gpu_preference" and isinstance(value, str):
            return compact(value)
        return value

    def describe(self, values: Mapping[str, Any]) -> str:
        gpu = values.get("gpu_preference") or "cheapest GPU"
        price = values.get("max_price")
        bid = f"bid at most ${float(price):.2f}/h" if isinstance(price, int | float) else "bid"
        failover = "auto failover" if values.get("auto_failover", True) else "no failover"
        return f"spot, {gpu}, {bid}, {failover}"

    # -- decisions -------------------------------------------------------------------------

    def decide(self, situation: Situation[SpotInstance]) -> Decision:
        decision = super().decide(situation)
        live = situation.live
        if live is None:
            return decision
        if live.failover_count > 0:
            moved = f"failed over {times(live.failover_count)}"
            if decision.action is Action.noop and not decision.reason:
                decision.reason = moved
            when = f", last at {live.last_failover_at}" if live.last_failover_at else ""
            decision.notes.append(f"{moved}; now on instance {live.instance_id}{when}")
        if live.state in MOVING_STATES:
            decision.notes.append(f"{live.state}: moving to a new spot machine now")
        return decision

    # -- cost ------------------------------------------------------------------------------

    def price_query(self, values: Mapping[str, Any]) -> dict[str, Any] | None:
        return {
            "gpu_name": values.get("gpu_preference"),
            "num_gpus": 1,
            "max_price": 1000,
            "min_disk": MIN_DISK_GB,
            "min_inet_down": MIN_INET_DOWN,
            "min_inet_up": 0,
            "order_by": "min_bid",
            "limit": 100,
        }

    def chosen_offer(self, values: Mapping[str, Any], offers: Sequence[Offer]) -> Offer | None:
        """The offer the server would bid on: the lowest minimum bid within `max_price`."""
        gpu = values.get("gpu_preference")
        cap = float(values.get("max_price") or 1.0)
        fit = [
            o
            for o in offers
            if o.min_bid is not None
            and o.min_bid <= cap
            and (o.num_gpus or 1) == 1
            and (o.disk_space or 0) >= MIN_DISK_GB
            and (o.inet_down or 0) >= MIN_INET_DOWN
            and (gpu is None or compact(o.gpu_name or "") == compact(str(gpu)))
        ]
        return min(fit, key=lambda o: (o.min_bid or 0.0, o.id)) if fit else None

    def hourly_price(self, values: Mapping[str, Any], offers: Sequence[Offer]) -> float | None:
        chosen = self.chosen_offer(values, offers)
        return chosen.min_bid if chosen is not None else None

    def cost_notes(self, values: Mapping[str, Any], offers: Sequence[Offer]) -> list[str]:
        chosen = self.chosen_offer(values, offers)
        if chosen is None or chosen.min_bid is None:
            return []
        cap = float(values.get("max_price") or 1.0)
        # Another search may have priced the same machine as spot: on-demand is the dearer.
        demand = max(
            (o.dph_total for o in offers if o.id == chosen.id and o.dph_total is not None),
            default=None,
        )
        text = (
            f"spot bid ${chosen.min_bid:.3f}/h now ({chosen.gpu_name}), worst case "
            f"${cap:.2f}/h (max_price)"
        )
        if demand is not None and demand > 0:
            saving = (1 - chosen.min_bid / demand) * 100
            text += f"; on-demand ${demand:.3f}/h ({saving:.0f}% saved)"
        return [text]

    # -- requests and waits ----------------------------------------------------------------

    def request_body(self, project: str, name: str, values: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in values.items() if v is not None}

    def wait_target(self, controls: Mapping[str, Any]) -> str:
        return str(controls.get("wait") or "active")

    def wait_done(self, live: SpotInstance, target: str) -> bool:
        """`active` on a machine that runs (its boot included)."""
        return target == "none" or live.is_ready
