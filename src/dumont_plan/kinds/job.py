"""`job.*`: run a task once on a GPU machine (contract §5); run policies decide re-runs.

The API does not echo a job's config (command, image, timeout ...), so every desired field is
compared with the ledger's last-applied values; the live object only tells the status.

How a job is planned is `kinds/runonce.py`'s table (`run_policy`: once, on_change, always);
a job with `schedule:` (a waiting `at` job, a cron schedule) is `kinds/job_schedule.py`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel

from dumont_plan.kinds import job_schedule
from dumont_plan.kinds.base import FieldClass, cheapest_gpu_price
from dumont_plan.kinds.decision import Decision, FieldChange, Situation
from dumont_plan.kinds.runonce import RunOnceHandler
from dumont_plan.spec.job import JobSpec
from dumont_plan.wire_models import (
    JOB_FAILED_STATUSES,
    JOB_FINISHED_STATUSES,
    Job,
    JobSchedule,
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
    "workdir": _R,
    "workdir_sha256": _R,
    "git_url": _R,
    "git_branch": _R,
    "hf_repo": _R,
    "hf_revision": _R,
    "hf_token": _S,
    "setup_script": _R,
    "pip_packages": _R,
    "gpu_type": _R,
    "num_gpus": _R,
    "num_nodes": _R,
    "use_spot": _R,
    "disk_size": _R,
    "timeout_minutes": _R,
    "image": _R,
    "output_paths": _R,
    "auto_destroy": _R,
    "max_retries": _R,
    "schedule": FieldClass.updatable,
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


class JobHandler(RunOnceHandler[Job]):
    kind: ClassVar[str] = "job"
    section: ClassVar[str] = "jobs"
    spec_model: ClassVar[type[BaseModel]] = JobSpec
    secrets_field: ClassVar[str | None] = "secrets"
    live_model: ClassVar[type[WireModel]] = Job
    fields: ClassVar[dict[str, FieldClass]] = JOB_FIELDS
    unordered: ClassVar[frozenset[str]] = frozenset({"output_paths"})
    notes: ClassVar[dict[str, str]] = {
        "name": "<project>-<name>; the ledger finds a lost job by it",
        "command": "a change means a new run; run_policy decides when",
        "workdir": "a local folder packed and uploaded at apply, unpacked into /workspace",
        "workdir_sha256": "the workdir's content: a change is 'workdir changed'",
        "hf_token": "write ${secret.HF_TOKEN}, never the value",
        "gpu_type": "priced from live offers (spot min bid or on-demand)",
        "num_nodes": "machines of num_gpus GPUs each; priced num_nodes x the machine's $/h",
        "timeout_minutes": "bounds the worst-case cost (price x timeout)",
        "run_policy": "once | on_change | always",
        "wait": "none | running | completed",
        "schedule": "{at} or {cron, tz}; a change is an update in place (kinds/job_schedule.py)",
    }
    # A changed `schedule` of a job that started only records (job_schedule decides the rest).
    record_only: ClassVar[frozenset[str]] = frozenset({"schedule"})

    finished_statuses: ClassVar[frozenset[str]] = FINISHED_STATUSES
    failed_statuses: ClassVar[frozenset[str]] = FAILED_STATUSES
    running_statuses: ClassVar[frozenset[str]] = RUNNING_STATUSES

    # -- live objects ----------------------------------------------------------------------

    def spent(self, live: Job) -> float | None:
        return live.total_cost

    def status(self, live: Job) -> str:
        return live.status  # a schedule sends `paused`, no status (JobSchedule derives one)

    def is_active(self, live: Job) -> bool:
        """Running work a replace would stop: not a schedule, nor a job that still waits."""
        if isinstance(live, JobSchedule) or live.status == "scheduled":
            return False
        return not self.is_finished(live)

    def live_values(self, live: Job) -> dict[str, Any]:
        return job_schedule.echoed(live)

    def outputs(self, live: Job) -> dict[str, Any]:
        out = super().outputs(live)
        out["status"] = live.status
        return out

    def wait_done(self, live: Job, target: str) -> bool:
        """A schedule, or a job that waits for its start time, is not waited for."""
        if isinstance(live, JobSchedule) or live.status == "scheduled":
            return True
        return super().wait_done(live, target)

    def decide(self, situation: Situation[Job]) -> Decision:
        s = situation
        if isinstance(s.live, JobSchedule) or job_schedule.schedule_of(s.values).get("cron"):
            return job_schedule.decide_cron(s)
        policy = str(s.controls.get("run_policy") or "once")
        return job_schedule.decide_waiting(s, policy) or super().decide(s)

    def when_text(self, values: Mapping[str, Any], now: datetime) -> str | None:
        return job_schedule.when_text(values, now)

    def start_problem(self, values: Mapping[str, Any], now: datetime) -> str | None:
        return job_schedule.start_problem(values, now)

    def describe(self, values: Mapping[str, Any]) -> str:
        count = int(values.get("num_gpus") or 1)
        nodes = int(values.get("num_nodes") or 1)
        gpu = str(values.get("gpu_type") or "")
        kind = "spot" if values.get("use_spot", True) else "on-demand"
        machine = f"{count}x {gpu}" if count > 1 else gpu
        return f"{nodes} nodes of {machine}, {kind}" if nodes > 1 else f"{machine}, {kind}"

    def change_words(self, changes: Sequence[FieldChange]) -> str:
        words = ["workdir changed" if c.field == "workdir_sha256" else c.field for c in changes]
        return ", ".join(words)

    # -- desired values --------------------------------------------------------------------

    def desired_from(self, project: str, name: str, dumped: Mapping[str, Any]) -> dict[str, Any]:
        values = super().desired_from(project, name, dumped)
        if isinstance(values.get("schedule"), Mapping):  # only the keys given: {at} | {cron, tz}
            values["schedule"] = {k: v for k, v in values["schedule"].items() if v is not None}
        return values

    def normalize(self, field: str, value: Any) -> Any:
        if field == "gpu_type" and isinstance(value, str):
            return value.strip().casefold()
        return value

    # -- cost ------------------------------------------------------------------------------

    def price_query(self, values: Mapping[str, Any]) -> dict[str, Any] | None:
        """A spot job asks for interruptible offers: the real offer schema has no spot field,
        its interruptible search prices `dph_total` at the spot rate (`fetch_offers` keeps
        those as `min_bid`)."""
        return {
            "gpu_name": values.get("gpu_type"),
            "num_gpus": values.get("num_gpus") or 1,
            "max_price": 1000,
            "min_disk": 0,
            "min_inet_down": 0,
            "min_inet_up": 0,
            "order_by": "dph_total",
            "limit": 100,
            "machine_type": "interruptible" if values.get("use_spot", True) else None,
        }

    def hourly_price(self, values: Mapping[str, Any], offers: Sequence[Offer]) -> float | None:
        """The cheapest machine of `num_gpus` x `gpu_type`, once per node (every node is
        billed, like the server's own price)."""
        machine = cheapest_gpu_price(
            offers,
            str(values.get("gpu_type") or ""),
            int(values.get("num_gpus") or 1),
            bool(values.get("use_spot", True)),
        )
        return None if machine is None else machine * int(values.get("num_nodes") or 1)

    def max_hours(self, values: Mapping[str, Any]) -> float | None:
        minutes = values.get("timeout_minutes")
        return float(minutes) / 60 if isinstance(minutes, int | float) else None

    # -- requests --------------------------------------------------------------------------

    def request_body(self, project: str, name: str, values: dict[str, Any]) -> dict[str, Any]:
        body = {k: v for k, v in values.items() if v is not None}
        if body.get("num_nodes") == 1:
            del body["num_nodes"]  # the default: a server without num_nodes gets the same body
        body["name"] = self.remote_name(project, name, values)
        return body
