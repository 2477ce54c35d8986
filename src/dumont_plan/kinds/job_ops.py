"""`job.*` through the API: list, create, cancel, get (`kinds.job` holds the decisions)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dumont_plan.client import DumontClient
from dumont_plan.errors import ApplyError, BadRequestError, NotFoundError
from dumont_plan.kinds.ops import KindOps, KindServices
from dumont_plan.spec import workdir
from dumont_plan.wire_models import Job, WireModel


class JobOps:
    kind = "job"

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path.cwd()

    def list_live(self, client: DumontClient) -> list[Job]:
        return client.jobs.list_all()

    def fill_missing(
        self, client: DumontClient, live: list[Job], remote_ids: Sequence[str]
    ) -> list[Job]:
        """`live` plus the jobs of `remote_ids` it lacks, read one by one, when the server's
        list may be incomplete (a server that ignores `offset`): a job is gone only on a 404
        for its id. A complete list costs nothing more."""
        if client.jobs.complete:
            return live
        listed = {job.id for job in live}
        found = list(live)
        for remote_id in remote_ids:
            if remote_id in listed:
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
        """Jobs have nothing to change in place: an update only records lifecycle settings."""
        return None

    def delete(self, client: DumontClient, remote_id: str, live: WireModel | None = None) -> None:
        """Cancel the job if it is still active (a finished job has nothing left to stop).

        The status is read again (not taken from `live`, which may be minutes old); a job that
        finished in between answers 400 "already finished", which is the wanted end state.
        """
        try:
            if not client.jobs.get(remote_id).is_finished:
                client.jobs.cancel(remote_id)
        except (NotFoundError, BadRequestError):
            return

    def get(self, client: DumontClient, remote_id: str) -> Job:
        return client.jobs.get(remote_id)


def make_ops(services: KindServices) -> KindOps[Job]:
    return JobOps(services.spec_root)
