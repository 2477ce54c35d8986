"""`finetune.*` through the API: list, upload + create, cancel, get (`kinds.finetune` decides).

A local dataset file comes in the body as `dataset_source: upload` with its stack-relative
path and `dataset_sha256` (`FinetuneHandler.request_body`): it is checked against that hash
(a file edited since the plan is refused: plan again), uploaded, and its server path sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dumont_plan.client import DumontClient
from dumont_plan.errors import ApplyError, BadRequestError, NotFoundError
from dumont_plan.kinds.ops import KindOps, KindServices
from dumont_plan.spec.finetune import file_sha256
from dumont_plan.wire_models import Finetune, WireModel


class FinetuneOps:
    kind = "finetune"

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path.cwd()

    def list_live(self, client: DumontClient) -> list[Finetune]:
        return client.finetune.list_all()

    def create(self, client: DumontClient, body: dict[str, Any], idempotency_key: str) -> Finetune:
        body = dict(body)
        digest = body.pop("dataset_sha256", None)
        if digest is not None:
            body["dataset_path"] = self.upload(client, body, str(digest))
        return client.finetune.create(idempotency_key=idempotency_key, **body)

    def upload(self, client: DumontClient, body: dict[str, Any], digest: str) -> str:
        """Upload the local dataset named in `body` (the file the plan hashed); its server path."""
        shown = str(body["dataset_path"])
        path = self.root / shown
        if not path.is_file():
            raise ApplyError(f"dataset {shown}: no such file any more", "restore it, or plan again")
        if file_sha256(path) != digest:
            raise ApplyError(
                f"dataset {shown} changed since the plan was made",
                "run `dumont plan` again to see and apply the new content",
            )
        answer = client.finetune.upload(path, dataset_format=body.get("dataset_format"))
        return answer.dataset_path

    def update(
        self,
        client: DumontClient,
        remote_id: str,
        values: dict[str, Any],
        changed: Sequence[str],
    ) -> Finetune | None:
        """Nothing changes in place: an update only records `max_hours` in the ledger."""
        return None

    def delete(self, client: DumontClient, remote_id: str, live: WireModel | None = None) -> None:
        """Cancel the fine-tune if it has not ended; a finished one keeps its outputs.

        The status is read again (not taken from `live`); one that ended in between answers
        400, which is the wanted end state, and one already gone 404.
        """
        try:
            if not client.finetune.get(remote_id).is_finished:
                client.finetune.cancel(remote_id)
        except (NotFoundError, BadRequestError):
            return

    def get(self, client: DumontClient, remote_id: str) -> Finetune:
        return client.finetune.get(remote_id)


def make_ops(services: KindServices) -> KindOps[Finetune]:
    return FinetuneOps(services.spec_root)
