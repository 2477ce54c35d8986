"""`job.*`: run a task once on a GPU machine (contract §5); run policies decide re-runs.

The API does not echo a job's config (command, image, timeout ...), so every desired field is
compared with the ledger's last-applied values; the live object only tells the status.

How a job is planned (the ledger knows it):

| live job                  | once                     | on_change            | always      |
|---------------------------|--------------------------|----------------------|-------------|
| finished, spec unchanged  | noop                     | noop                 | run         |
| finished, spec changed    | noop (note)              | run                  | run         |
| failed/timeout/cancelled  | noop (lifecycle note)    | run                  | run         |
| active, spec changed      | noop (note)              | error, or replace with --allow-restart |
| gone from the server      | noop (note)              | run if changed       | run         |

`once` never runs a job again by itself (the real platform forgets jobs on restart, so a gone
job is not re-run); `--replace job.x` runs it again (an active one needs `--allow-restart`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel

from dumont_plan.kinds.base import BaseHandler, FieldClass, format_elapsed, parse_time
from dumont_plan.kinds.decision import Action, Decision, Situation
from dumont_plan.spec.job import JobSpec
from dumont_plan.wire_models import (
    JOB_FAILED_STATUSES,
    JOB_FINISHED_STATUSES,
    Job,
    Offer,
    WireModel,
)

FINISHED_STATUSES = JOB_FINISHED_STATUSES
FAILED_STATUSES = JOB_FAILED_STATUSES
RUNNING_STATUSES = frozenset({"running", "completing"})
_R, _S, _C, _O = FieldClass.replace, FieldClass.secret, FieldClass.control, FieldClass.output

JOB_FIELDS: dict[str, FieldClass] = {
    "name": FieldClass.identity,
    "source": _R,
    "command": _R,
    "git_url": _R,
    "git_branch": _R,
    "hf_repo": _R,
    "hf_revision": _R,
    "hf_token": _S,
    "setup_script": _R,
    "pip_packages": _R,
    "gpu_type": _R,
    "num_gpus": _R,
    "use_spot": _R,
    "disk_size": _R,
    "timeout_minutes": _R,
    "image": _R,
    "output_paths": _R,
    "auto_destroy": _R,
    "max_retries": _R,
    "run_policy": _C,
    "wait": _C,
    "depends_on": _C,
    "lifecycle": _C,
    "id": _O,
    "status": _O,
    "instance_id": _O,
    "ssh_host": _O,
    "ssh_port": _O,
    "created_at": _O,
    "started_at": _O,
    "completed_at": _O,
    "duration": _O,
    "total_cost": _O,
    "gpu_hours": _O,
    "error_message": _O,
}


class JobHandler(BaseHandler[Job]):
    kind: ClassVar[str] = "job"
    section: ClassVar[str] = "jobs"
    spec_model: ClassVar[type[BaseModel]] = JobSpec
    runs_to_completion: ClassVar[bool] = True
    secrets_field: ClassVar[str | None] = "secrets"
    live_model: ClassVar[type[WireModel]] = Job
    fields: ClassVar[dict[str, FieldClass]] = JOB_FIELDS
    unordered: ClassVar[frozenset[str]] = frozenset({"output_paths"})
    notes: ClassVar[dict[str, str]] = {
        "name": "<project>-<name>; the ledger finds a lost job by it",
        "command": "a change means a new run; run_policy decides when",
        "hf_token": "write ${secret.HF_TOKEN}, never the value",
        "gpu_type": "priced from live offers (spot min bid or on-demand)",
        "timeout_minutes": "bounds the worst-case cost (price x timeout)",
        "run_policy": "once | on_change | always",
        "wait": "none | running | completed",
    }

    # -- live objects ----------------------------------------------------------------------

    def live_id(self, live: Job) -> str:
        return live.id

    def live_name(self, live: Job) -> str | None:
        return live.name

    def live_created(self, live: Job) -> str:
        return live.created_at or ""

    def status(self, live: Job) -> str:
        return live.status

    def is_finished(self, live: Job) -> bool:
        return live.is_finished

    def is_failed(self, live: Job) -> bool:
        return live.is_failed

    def needs_delete(self, live: Job) -> bool:
        return not live.is_finished

    def describe(self, values: Mapping[str, Any]) -> str:
        count = int(values.get("num_gpus") or 1)
        gpu = str(values.get("gpu_type") or "")
        kind = "spot" if values.get("use_spot", True) else "on-demand"
        return f"{count}x {gpu}, {kind}" if count > 1 else f"{gpu}, {kind}"

    def observed_view(self, live: Job | None) -> dict[str, Any]:
        if live is None:
            return {"present": False}
        phase = live.status if live.is_finished else "active"
        return {"present": True, "id": live.id, "phase": phase}

    # -- desired values --------------------------------------------------------------------

    def normalize(self, field: str, value: Any) -> Any:
        if field == "gpu_type" and isinstance(value, str):
            return value.strip().casefold()
        return value

    # -- decisions -------------------------------------------------------------------------

    def decide(self, situation: Situation[Job]) -> Decision:
        s = situation
        policy = str(s.controls.get("run_policy") or "once")
        changed = bool(s.changes)
        what = ", ".join(c.field for c in s.changes)
        if s.live is None:
            return self._decide_gone(s, policy, changed, what)
        status = s.live.status
        if not s.live.is_finished:
            return self._decide_active(s, s.live, policy, changed, what, status)
        failed = s.live.is_failed
        drift = "lifecycle" if failed else None
        if s.forced_replace:
            return Decision(Action.run, "--replace", drift=drift)
        if policy == "always":
            return Decision(Action.run, f"run_policy always (last run {status})", drift=drift)
        if policy == "on_change":
            if changed:
                return Decision(Action.run, f"spec changed ({what})", drift=drift)
            if failed:
                return Decision(Action.run, f"last run ended {status}", drift=drift)
            return Decision(Action.noop, status)
        notes = []
        if changed:
            notes.append(
                f"spec changed ({what}); run_policy once keeps the finished run "
                f"(use --replace {s.address} or run_policy: on_change to run it again)"
            )
        if failed:
            notes.append(
                f"last run ended {status}; run_policy once does not run it again "
                f"(use --replace {s.address})"
            )
        return Decision(Action.noop, status, drift=drift, notes=notes)

    def _decide_gone(self, s: Situation[Job], policy: str, changed: bool, what: str) -> Decision:
        if s.forced_replace:
            return Decision(Action.run, "--replace", drift="gone")
        if policy == "always":
            return Decision(Action.run, "run_policy always", drift="gone")
        if policy == "on_change" and changed:
            return Decision(Action.run, f"spec changed ({what})", drift="gone")
        note = (
            "the server no longer lists this job; its run is kept as done "
            f"(use --replace {s.address} to run it again)"
        )
        return Decision(Action.noop, "gone from the server", drift="gone", notes=[note])

    def _decide_active(
        self,
        s: Situation[Job],
        live: Job,
        policy: str,
        changed: bool,
        what: str,
        status: str,
    ) -> Decision:
        restart = s.forced_replace or (changed and policy != "once")
        if restart:
            why = "--replace" if s.forced_replace else f"spec changed ({what})"
            if not s.allow_restart:
                return Decision(
                    Action.noop,
                    status,
                    error=(
                        f"{s.address} is {status} ({self.spend_text(live, s.price, s.now)}) "
                        f"and would be cancelled and started again: {why}; "
                        "re-run with --allow-restart to replace it, or wait until it finishes"
                    ),
                )
            return Decision(
                Action.replace,
                f"{why}; cancels the {status} run ({self.spend_text(live, s.price, s.now)})",
            )
        notes = []
        if changed:
            notes.append(f"spec changed ({what}) while {status}; run_policy once keeps this run")
        elif policy == "always":
            notes.append(f"still {status}; run_policy always runs it again once it finishes")
        return Decision(Action.noop, status, notes=notes)

    def spend_text(self, live: Job, price: float | None, now: datetime | None) -> str:
        """`running for 3m12s, about $0.02 spent` (spend from the live cost or price x time)."""
        started = parse_time(live.started_at) or parse_time(live.created_at)
        if started is None:
            return "just started"
        elapsed = ((now or datetime.now(UTC)) - started).total_seconds()
        spent = live.total_cost
        cost = spent if spent is not None and spent > 0 else None
        if cost is None and price is not None:
            cost = price * max(0.0, elapsed) / 3600
        text = f"for {format_elapsed(elapsed)}"
        if cost is not None:
            text += f", about ${cost:.2f} spent"
        return text

    # -- cost ------------------------------------------------------------------------------

    def price_query(self, values: Mapping[str, Any]) -> dict[str, Any] | None:
        return {
            "gpu_name": values.get("gpu_type"),
            "num_gpus": values.get("num_gpus") or 1,
            "max_price": 1000,
            "min_disk": 0,
            "min_inet_down": 0,
            "min_inet_up": 0,
            "order_by": "dph_total",
            "limit": 100,
        }

    def hourly_price(self, values: Mapping[str, Any], offers: Sequence[Offer]) -> float | None:
        gpu = str(values.get("gpu_type") or "").strip().casefold()
        count = int(values.get("num_gpus") or 1)
        spot = bool(values.get("use_spot", True))
        prices = []
        for offer in offers:
            if (offer.gpu_name or "").casefold() != gpu or (offer.num_gpus or 1) != count:
                continue
            price = offer.min_bid if spot else None
            if price is None:
                price = offer.dph_total
            if price is not None:
                prices.append(price)
        return min(prices) if prices else None

    def max_hours(self, values: Mapping[str, Any]) -> float | None:
        minutes = values.get("timeout_minutes")
        return float(minutes) / 60 if isinstance(minutes, int | float) else None

    # -- requests --------------------------------------------------------------------------

    def request_body(self, project: str, name: str, values: dict[str, Any]) -> dict[str, Any]:
        body = {k: v for k, v in values.items() if v is not None}
        body["name"] = self.remote_name(project, name, values)
        return body

    # -- waits -----------------------------------------------------------------------------

    def wait_done(self, live: Job, target: str) -> bool:
        status = live.status
        if target == "none":
            return True
        if target == "running":
            return status in RUNNING_STATUSES or status == "completed"
        return status == "completed"
