"""`instance.*`: a long-lived GPU machine won by the wizard race, kept running or paused.

The server echoes part of an instance (GPU, count, intended state), so those fields are also
compared with the live object: a paused-by-hand instance shows `changed` drift and a resume.

    gpu_name, num_gpus, speed_tier, region, disk_space, image -> replace (a new race)
    state running <-> paused                                   -> pause / resume in place
    label, models, max_price                                   -> update (see `notes`)
    live instance failed/exited while meant to run             -> replace (lifecycle drift)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel

from dumont_plan.errors import DumontError
from dumont_plan.kinds.base import BaseHandler, FieldClass
from dumont_plan.kinds.decision import Action, Decision, Situation
from dumont_plan.offers import WizardRequest, select_offers
from dumont_plan.spec.instance import InstanceSpec
from dumont_plan.wire_models import Instance, Offer, WireModel

_R, _U, _C, _O = FieldClass.replace, FieldClass.updatable, FieldClass.control, FieldClass.output

INSTANCE_FIELDS: dict[str, FieldClass] = {
    "gpu_name": _R,
    "num_gpus": _R,
    "speed_tier": _R,
    "region": _R,
    "disk_space": _R,
    "image": _R,
    "max_price": _U,
    "label": _U,
    "state": _U,
    "models": _U,
    "wait": _C,
    "depends_on": _C,
    "lifecycle": _C,
    "id": _O,
    "status": _O,
    "actual_status": _O,
    "public_ipaddr": _O,
    "ssh_host": _O,
    "ssh_port": _O,
    "start_date": _O,
    "dph_total": _O,
    "ports": _O,
}


class InstanceHandler(BaseHandler[Instance]):
    kind: ClassVar[str] = "instance"
    section: ClassVar[str] = "instances"
    spec_model: ClassVar[type[BaseModel]] = InstanceSpec
    live_model: ClassVar[type[WireModel]] = Instance
    fields: ClassVar[dict[str, FieldClass]] = INSTANCE_FIELDS
    unordered: ClassVar[frozenset[str]] = frozenset({"models"})
    unset_is_any: ClassVar[frozenset[str]] = frozenset({"gpu_name", "image"})
    notes: ClassVar[dict[str, str]] = {
        "gpu_name": "unset: any GPU, and the one won is kept",
        "image": "unset: the platform's image, never diffed",
        "max_price": "a race filter: recorded, used by the next race",
        "label": "the name dumont finds it by (default <project>-<name>); the API cannot "
        "relabel a live instance, so a new label applies from the next race",
        "state": "running | paused: pause / resume in place",
        "models": "installed once running; removing one does not uninstall it",
    }

    # -- live objects ----------------------------------------------------------------------

    def remote_name(self, project: str, name: str, values: Mapping[str, Any]) -> str:
        label = values.get("label")
        return str(label) if label else super().remote_name(project, name, values)

    def live_id(self, live: Instance) -> str:
        return str(live.id)

    def live_name(self, live: Instance) -> str | None:
        return live.label

    def live_created(self, live: Instance) -> str:
        return live.start_date or ""

    def intended(self, live: Instance) -> str:
        """`paused` or `running`: what the instance is meant to be."""
        return "paused" if live.is_paused else "running"

    def status(self, live: Instance) -> str:
        return live.display_status

    def is_failed(self, live: Instance) -> bool:
        """Meant to run but in a state it never boots from (a paused one is not failed)."""
        return not live.is_paused and live.is_failed

    def live_values(self, live: Instance) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.intended(live)}
        if live.gpu_name:
            out["gpu_name"] = live.gpu_name
        if live.num_gpus is not None:
            out["num_gpus"] = live.num_gpus
        return out

    def observed_view(self, live: Instance | None) -> dict[str, Any]:
        if live is None:
            return {"present": False}
        return {
            "present": True,
            "id": str(live.id),
            "state": self.intended(live),
            "failed": self.is_failed(live),
            **{k: v for k, v in self.live_values(live).items() if k != "state"},
        }

    def live_price(self, live: Instance) -> float | None:
        return live.hourly_price

    def live_hourly(self, live: Instance) -> float | None:
        return live.hourly_price if not live.is_paused else None

    def describe(self, values: Mapping[str, Any]) -> str:
        gpu = values.get("gpu_name") or "any GPU"
        count = int(values.get("num_gpus") or 1)
        parts = [f"{count}x {gpu}" if count > 1 else str(gpu)]
        parts.append(f"{values.get('speed_tier') or 'fast'}, {values.get('region') or 'global'}")
        if values.get("state") == "paused":
            parts.append("paused")
        return ", ".join(parts)

    # -- desired values --------------------------------------------------------------------

    def desired_from(self, project: str, name: str, dumped: Mapping[str, Any]) -> dict[str, Any]:
        values = super().desired_from(project, name, dumped)
        if not values.get("label"):
            values["label"] = super().remote_name(project, name, values)
        return values

    def normalize(self, field: str, value: Any) -> Any:
        if field == "gpu_name" and isinstance(value, str):
            return value.strip().casefold()
        if field == "region" and isinstance(value, str):
            return value.strip().casefold()
        return value

    # -- decisions -------------------------------------------------------------------------

    def decide(self, situation: Situation[Instance]) -> Decision:
        decision = super().decide(situation)
        if decision.action is not Action.update:
            return decision
        state = next((c for c in situation.changes if c.field == "state"), None)
        if state is not None:
            action = Action.pause if state.new == "paused" else Action.resume
            decision.action = action
        if any(c.field == "label" for c in situation.changes):
            decision.notes.append(
                "the API cannot relabel a live instance: the new label is recorded and used "
                "from the next race"
            )
        return decision

    # -- cost ------------------------------------------------------------------------------

    def wizard_request(self, values: Mapping[str, Any], **extra: Any) -> WizardRequest:
        return WizardRequest(
            gpu_name=values.get("gpu_name"),
            speed_tier=str(values.get("speed_tier") or "fast"),
            max_price=float(values.get("max_price") or 2.0),
            region=str(values.get("region") or "global"),
            disk_space=float(values.get("disk_space") or 50),
            num_gpus=int(values.get("num_gpus") or 1),
            image=values.get("image"),
            label=values.get("label"),
            **extra,
        )

    def price_query(self, values: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.wizard_request(values).offer_filters()

    def hourly_price(self, values: Mapping[str, Any], offers: Sequence[Offer]) -> float | None:
        """The cheapest offer the race would consider (its filters, tier band and region)."""
        gpu = values.get("gpu_name")
        count = int(values.get("num_gpus") or 1)
        disk = float(values.get("disk_space") or 0)
        fit = [
            o
            for o in offers
            if (gpu is None or (o.gpu_name or "").casefold() == str(gpu).casefold())
            and (o.num_gpus or 1) == count
            and (o.disk_space or 0) >= disk
        ]
        try:
            chosen = select_offers(fit, self.wizard_request(values).validated(), set()).offers
        except DumontError:  # bad filters are reported by validation, not here
            return None
        return chosen[0].dph_total if chosen else None

    # -- requests --------------------------------------------------------------------------

    def request_body(self, project: str, name: str, values: dict[str, Any]) -> dict[str, Any]:
        body = dict(values)
        body["label"] = self.remote_name(project, name, values)
        return body

    # -- waits -----------------------------------------------------------------------------

    def wait_target(self, controls: Mapping[str, Any]) -> str:
        return str(controls.get("wait") or "running")

    def wait_done(self, live: Instance, target: str) -> bool:
        if target == "none" or live.is_paused:
            return True
        return live.is_running
