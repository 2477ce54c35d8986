"""`job.*` through the API: list, create, cancel, get (`kinds.job` holds the decisions).

A job with `schedule: {cron}` is a schedule of the local control plane (`/jobs/schedules`,
ids `sch_…`): it is read, changed and deleted there. One with `schedule: {at}` is a job sent
with `start_at`. The runs of schedules (jobs with a `schedule_id`) are never a resource's
object, so they are left out of the live jobs (nor adopted by name).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dumont_plan.client import DumontClient
from dumont_plan.errors import ApplyError, BadRequestError, NotFoundError
from dumont_plan.kinds.ops import KindOps, KindServices
from dumont_plan.spec import workdir
from dumont_plan.wire_models import Job, JobSchedule, WireModel

SCHEDULE_PREFIX = "sch_"  # the local control plane's schedule ids


def is_schedule(remote_id: str) -> bool:
    return remote_id.startswith(SCHEDULE_PREFIX)


# What a server that lacks these extensions would do with the job: ignore the field silently.
LOCAL = "the local control plane (`dumont server start`)"
NEEDS = (
    ("cron", "jobs.schedules", "has no cron schedules", f"use schedule.at for one run, or {LOCAL}"),
    ("at", "jobs.start-at", "would start it at once", f"remove schedule.at, or use {LOCAL}"),
    (
        "num_nodes",
        "jobs.num-nodes",
        "runs a job on one machine",
        "use num_nodes: 1, or a control plane started with --executor=skypilot",
    ),
)


def check_capabilities(
    client: DumontClient, body: dict[str, Any], schedule: dict[str, Any]
) -> None:
    """Refuse, before anything is sent, a job whose `schedule` or `num_nodes` the server would
    not honour (one `/health` read, only for such a job)."""
    given = {**schedule, "num_nodes": (body.get("num_nodes") or 1) > 1}
    for key, capability, what, fix in NEEDS:
        if given.get(key) and capability not in client.capabilities():
            raise ApplyError(
                f"job {body.get('name')}: this server {what} (no `{capability}` in /health)",
                fix,
            )


class JobOps:
    kind = "job"

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path.cwd()

    def list_live(self, client: DumontClient) -> list[Job]:
        return [job for job in client.jobs.list_all() if not job.raw.get("schedule_id")]

    def fill_missing(
        self, client: DumontClient, live: list[Job], remote_ids: Sequence[str]
    ) -> list[Job]:
        """`live` plus the jobs of `remote_ids` it lacks, read one by one, when the server's
        list may be incomplete (a server that ignores `offset`): a job is gone only on a 404
        for its id. A complete list costs nothing more. When the ledger holds a schedule, the
        schedules are listed once (only then: a plan of plain jobs asks nothing more)."""
        found = list(live)
        if any(is_schedule(i) for i in remote_ids):
            found.extend(
                JobSchedule.from_wire(s, "GET /api/v1/jobs/schedules")
                for s in client.jobs.list_schedules()
            )
        if client.jobs.complete:
            return found
        listed = {job.id for job in found}
        for remote_id in remote_ids:
            if remote_id in listed or is_schedule(remote_id):
                continue
            try:
                found.append(client.jobs.get(remote_id))
            except NotFoundError:
                continue  # gone: the server said so for this id
        return found

    def create(self, client: DumontClient, body: dict[str, Any], idempotency_key: str) -> Job:
        body = dict(body)
        folder = body.pop("workdir", None)
        digest = body.pop("workdir_sha256", None)
        schedule = body.pop("schedule", None) or {}
        check_capabilities(client, body, schedule)
        if schedule.get("cron"):
            answer = client.jobs.create_schedule(
                str(schedule["cron"]),
                str(schedule.get("tz") or "UTC"),
                body,
                name=body.get("name"),
                idempotency_key=idempotency_key,
            )
            return JobSchedule.from_wire(answer, "POST /api/v1/jobs/schedules")
        if schedule.get("at"):
            body["start_at"] = schedule["at"]
        if folder is not None:
            body["workdir_id"] = self.upload(client, str(folder), digest)
        return client.jobs.create(idempotency_key=idempotency_key, **body)

    def upload(self, client: DumontClient, shown: str, digest: str | None) -> str:
        """Pack and upload the job's workdir (the folder the plan hashed); its workdir_id."""
        path = self.root / shown
        if not path.is_dir():
            raise ApplyError(
                f"workdir {shown}: no such folder any more", "restore it, or plan again"
            )
        if digest is not None and workdir.tree_hash(path) != digest:
            raise ApplyError(
                f"workdir {shown} changed since the plan was made",
                "run `dumont plan` again to see and apply the new content",
            )
        packed = workdir.pack(path)
        try:
            answer = client.jobs.upload_workdir(packed.archive)
        finally:
            packed.archive.unlink(missing_ok=True)
        return str(answer["workdir_id"])

    def update(
        self,
        client: DumontClient,
        remote_id: str,
        values: dict[str, Any],
        changed: Sequence[str],
    ) -> Job | None:
        """Only a schedule changes in place: a cron schedule's cron/tz, or a waiting job's
        start time (one that started meanwhile keeps its run: the change is only recorded).
        Any other update only records lifecycle settings."""
        if "schedule" not in changed:
            return None
        schedule = values.get("schedule") or {}
        if is_schedule(remote_id):
            answer = client.jobs.change_schedule(
                remote_id, cron=schedule.get("cron"), timezone=schedule.get("tz") or "UTC"
            )
            return JobSchedule.from_wire(answer, f"PATCH /api/v1/jobs/schedules/{remote_id}")
        try:
            if client.jobs.get(remote_id).status != "scheduled":
                return None
            return client.jobs.move_start(remote_id, schedule.get("at"))
        except (NotFoundError, BadRequestError):
            return None  # gone, or started between the read and the change

    def delete(self, client: DumontClient, remote_id: str, live: WireModel | None = None) -> None:
        """Delete a schedule (the jobs it made stay); cancel a job if it is still active (a
        finished job has nothing left to stop; a waiting one never runs).

        The status is read again (not taken from `live`, which may be minutes old); a job that
        finished in between answers 400 "already finished", which is the wanted end state.
        """
        try:
            if is_schedule(remote_id):
                client.jobs.schedule_action(remote_id, "delete")
            elif not client.jobs.get(remote_id).is_finished:
                client.jobs.cancel(remote_id)
        except (NotFoundError, BadRequestError):
            return

    def get(self, client: DumontClient, remote_id: str) -> Job:
        if is_schedule(remote_id):
            answer = client.jobs.get_schedule(remote_id)
            return JobSchedule.from_wire(answer, f"GET /api/v1/jobs/schedules/{remote_id}")
        return client.jobs.get(remote_id)


def make_ops(services: KindServices) -> KindOps[Job]:
    return JobOps(services.spec_root)
