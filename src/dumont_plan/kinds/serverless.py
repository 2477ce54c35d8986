"""`serverless.*`: an instance's auto-pause policy (contract §7.1), one per instance.

The API's enable is an upsert keyed by the instance's id, so the policy's remote id is its
instance's id, and every change but the instance is an update in place (`~`: enable again with
the whole policy). The server echoes `mode` and `idle_timeout_seconds` (the local control
plane also `gpu_threshold` and `keep_warm`), compared for `changed` drift; the webhook's
secret is a `${secret.NAME}`, kept in the state as a salted hash like every secret.

    instance                                           -> replace (disable there, enable here)
    mode, idle_timeout_seconds, gpu_threshold,
    keep_warm, max_price, webhook                      -> update in place (enable again)
    destroy / removed from the spec                    -> disable (a paused instance resumes)
    disabled outside dumont                            -> create (enable again)

The plan shows the mode's effect on its instance's cost: `economic: idle $0.005/h vs $0.45/h
running` (the instance's $/h: its planned price, else its live one). A policy adds no cost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel

from dumont_plan.kinds.base import BaseHandler, FieldClass
from dumont_plan.kinds.decision import Decision, Situation
from dumont_plan.spec.serverless import ServerlessSpec
from dumont_plan.wire_models import Offer, ServerlessPolicy, WireModel

_R, _U, _C, _O = FieldClass.replace, FieldClass.updatable, FieldClass.control, FieldClass.output

SERVERLESS_FIELDS: dict[str, FieldClass] = {
    "instance": _R,
    "mode": _U,
    "idle_timeout_seconds": _U,
    "gpu_threshold": _U,
    "keep_warm": _U,
    "max_price": _U,
    "webhook": _U,
    "depends_on": _C,
    "lifecycle": _C,
    "instance_id": _O,
    "is_paused": _O,
    "current_gpu_util": _O,
    "idle_since": _O,
    "will_pause_at": _O,
    "total_savings_usd": _O,
    "avg_cold_start_seconds": _O,
}

# $/h a paused instance still costs, per mode (contract §7.1's figures: a CPU standby for
# fast, the disk for economic and spot).
IDLE_HOURLY: dict[str, float] = {"fast": 0.01, "economic": 0.005, "spot": 0.005}
# Fields the server echoes (the local control plane: all; the real platform: the first two).
ECHOED = ("mode", "idle_timeout_seconds", "gpu_threshold", "keep_warm", "max_price")


def money(value: float) -> str:
    return f"${value:.3f}/h" if 0 < value < 0.01 else f"${value:.2f}/h"


class ServerlessHandler(BaseHandler[ServerlessPolicy]):
    kind: ClassVar[str] = "serverless"
    section: ClassVar[str] = "serverless"
    spec_model: ClassVar[type[BaseModel]] = ServerlessSpec
    live_model: ClassVar[type[WireModel]] = ServerlessPolicy
    fields: ClassVar[dict[str, FieldClass]] = SERVERLESS_FIELDS
    unset_is_any: ClassVar[frozenset[str]] = frozenset({"max_price"})
    # The field holding `${instance.NAME.id}` of the instance whose cost it changes.
    governs: ClassVar[tuple[str, str] | None] = ("instance", "instance")
    notes: ClassVar[dict[str, str]] = {
        "instance": "${instance.NAME.id} or an id; one policy per instance",
        "mode": "fast | economic | spot; the plan shows its idle $/h against the running one",
        "idle_timeout_seconds": "2-3600",
        "gpu_threshold": "0-100 (%)",
        "max_price": "spot's bid ceiling on wake; unset: the server's choice, never diffed",
        "webhook": "url and secret: ${secret.NAME}; shown as (sensitive) when it has one",
    }

    # -- live objects ----------------------------------------------------------------------

    def live_id(self, live: ServerlessPolicy) -> str:
        return str(live.instance_id)

    def live_name(self, live: ServerlessPolicy) -> str | None:
        """None: a policy has no name (enable is an upsert: a lost answer is enabled again)."""
        return None

    def live_created(self, live: ServerlessPolicy) -> str:
        return ""

    def status(self, live: ServerlessPolicy) -> str:
        return live.state

    def live_values(self, live: ServerlessPolicy) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ECHOED:
            value = getattr(live, name)
            if value is not None:
                out[name] = value
        return out

    def observed_view(self, live: ServerlessPolicy | None) -> dict[str, Any]:
        if live is None:
            return {"present": False}
        return {"present": True, "id": self.live_id(live), **self.live_values(live)}

    def outputs(self, live: ServerlessPolicy) -> dict[str, Any]:
        out = super().outputs(live)
        out["id"] = live.instance_id
        return out

    def normalize(self, field: str, value: Any) -> Any:
        if field == "mode" and isinstance(value, str):
            return value.strip().lower()
        if field in ("gpu_threshold", "max_price") and isinstance(value, int | float):
            return float(value)
        return value

    def describe(self, values: Mapping[str, Any]) -> str:
        """`economic, pauses after 30s below 5% GPU`."""
        mode = str(values.get("mode") or "spot")
        if values.get("keep_warm"):
            return f"{mode}, kept warm"
        timeout = values.get("idle_timeout_seconds")
        threshold = values.get("gpu_threshold")
        below = f"{threshold:g}%" if isinstance(threshold, int | float) else "5%"
        return f"{mode}, pauses after {timeout or 10}s below {below} GPU"

    def cost_effect(self, values: Mapping[str, Any], governed_hourly: float | None) -> str | None:
        """`economic: idle $0.005/h vs $0.45/h running` (the instance's $/h when known)."""
        mode = str(values.get("mode") or "spot")
        running = f"{money(governed_hourly)} running" if governed_hourly is not None else None
        if values.get("keep_warm"):
            return f"{mode}, kept warm: never paused" + (f", {running}" if running else "")
        idle = money(IDLE_HOURLY.get(mode, 0.0))
        text = (
            f"{mode}: idle {idle} vs {running}" if running else f"{mode}: idle {idle} while paused"
        )
        if mode == "spot":
            text += " (the machine is released while paused; a wake bids at the spot price)"
        return text

    def governed_live_values(self, live: ServerlessPolicy) -> dict[str, Any]:
        """An instance the policy paused is meant to run (the policy wakes it on demand): its
        `state` reads `running`, so the plan neither resumes it nor reports drift."""
        return {"state": "running"}

    def decide(self, situation: Situation[ServerlessPolicy]) -> Decision:
        """The default (gone -> create, `instance` -> replace, else update), and a note when
        the last wake failed (the instance stays paused until a wake succeeds)."""
        decision = super().decide(situation)
        live = situation.live
        if live is not None and live.status == "wake_failed":
            reason = f": {live.last_wake_error}" if live.last_wake_error else ""
            decision.notes.append(
                f"the last wake of instance {live.instance_id} failed{reason}; it stays paused "
                f"until `dumont serverless wake {live.instance_id}` succeeds"
            )
        return decision

    # -- cost ------------------------------------------------------------------------------

    def hourly_price(self, values: Mapping[str, Any], offers: Sequence[Offer]) -> float | None:
        """A policy costs nothing itself (its instance is priced on its own line)."""
        return 0.0

    # -- requests --------------------------------------------------------------------------

    def request_body(self, project: str, name: str, values: dict[str, Any]) -> dict[str, Any]:
        """The enable body (instance id apart): the webhook as `webhook_url`/`webhook_secret`."""
        body = {k: values[k] for k in ECHOED if values.get(k) is not None}
        body["instance_id"] = values.get("instance")
        webhook = values.get("webhook")
        if isinstance(webhook, dict):
            body["webhook_url"] = webhook.get("url")
            if webhook.get("secret"):
                body["webhook_secret"] = webhook["secret"]
        return body
