"""`/api/v1/finetune`: LoRA fine-tunes of a base model on a dataset (contract §6).

The collection has no trailing slash (`POST /api/v1/finetune/jobs`). A dataset is uploaded
first (`upload`, a streamed multipart body), then named by the create request
(`dataset_source="upload"`, `dataset_path` = the path the upload answered).
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote

from dumont_plan.client.base import Transport
from dumont_plan.wire_models import (
    DatasetUpload,
    Finetune,
    FinetuneModel,
    FinetunePage,
    FinetunePreset,
)

if TYPE_CHECKING:
    import httpx  # annotations only: the transport loads it when it sends

PREFIX = "/api/v1/finetune"
COLLECTION = f"{PREFIX}/jobs"
UPLOAD = f"{COLLECTION}/upload-dataset"
PAGE_SIZE = 100
UPLOAD_CHUNK = 64 * 1024
WHOLE_LOG = 10**9  # lines: `tail` meaning "everything" (the API's default is 100)

# Called with (bytes sent so far, total bytes) while an upload's body is sent.
Progress = Callable[[int, int], None]


def _item(job_id: str) -> str:
    return f"{COLLECTION}/{quote(str(job_id), safe='')}"


class ProgressReader:
    """A file opened for reading that reports each chunk httpx takes from it.

    httpx streams a multipart file field in chunks (never the whole file in memory) and asks
    its length by `fileno()`; rewinding (`seek(0)`) restarts the count.
    """

    def __init__(self, file: IO[bytes], total: int, progress: Progress | None) -> None:
        self._file = file
        self.total = total
        self.sent = 0
        self._progress = progress

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(UPLOAD_CHUNK if size is None or size < 0 else size)
        self.sent += len(chunk)
        if self._progress is not None and chunk:
            self._progress(self.sent, self.total)
        return chunk

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position = self._file.seek(offset, whence)
        self.sent = position
        return position

    def tell(self) -> int:
        return self._file.tell()

    def fileno(self) -> int:
        return self._file.fileno()


class FinetuneAPI:
    """The Fine-tune resource group: `Finetune` read models (`.raw`: the JSON)."""

    def __init__(self, transport: Transport, page_size: int = PAGE_SIZE) -> None:
        self._t = transport
        self.page_size = page_size

    # -- catalogue ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """`GET /finetune/status`: which executors are usable (`message` says why not)."""
        result: dict[str, Any] = self._t.request("GET", f"{PREFIX}/status")
        return result

    def models(self) -> builtins.list[FinetuneModel]:
        """`GET /finetune/models` -> the base models (contract §6.2)."""
        where = f"GET {PREFIX}/models"
        answer = self._t.request("GET", f"{PREFIX}/models")
        items = answer.get("models") if isinstance(answer, dict) else answer
        return FinetuneModel.list_from_wire(items, where)

    def presets(self) -> builtins.list[FinetunePreset]:
        """`GET /finetune/presets` (local control plane) -> the named hyper-parameter bundles."""
        where = f"GET {PREFIX}/presets"
        answer = self._t.request("GET", f"{PREFIX}/presets")
        items = answer.get("presets") if isinstance(answer, dict) else answer
        if isinstance(items, dict):  # {name: {description, config}}
            items = [{"name": name, **value} for name, value in items.items()]
        return FinetunePreset.list_from_wire(items, where)

    # -- datasets -------------------------------------------------------------------------

    def upload(
        self,
        path: str | Path,
        *,
        dataset_format: str | None = None,
        progress: Progress | None = None,
    ) -> DatasetUpload:
        """`POST /finetune/jobs/upload-dataset` with `path` as the multipart field `file`.

        The body is streamed from disk in chunks, calling `progress(sent, total)` as they go.
        `dataset_format` (alpaca, sharegpt, raw) asks the server to check every record against
        it; without it the server detects the format. Not retried (each upload is stored).
        """
        file_path = Path(path)
        with file_path.open("rb") as file:
            total = os.fstat(file.fileno()).st_size
            reader = ProgressReader(file, total, progress)
            files = {"file": (file_path.name, reader, "application/octet-stream")}
            params = {"format": dataset_format} if dataset_format else None
            answer = self._t.request("POST", UPLOAD, files=files, params=params, idempotent=False)
        return DatasetUpload.from_wire(answer, f"POST {UPLOAD}")

    # -- jobs -----------------------------------------------------------------------------

    def create(self, idempotency_key: str | None = None, **fields: Any) -> Finetune:
        """`POST /finetune/jobs` with the create fields (contract §6.3: hyper-parameters nested
        under `config`); 201 -> the Finetune. Never retried; with `idempotency_key` a server
        that keeps keys answers a repeat with the first fine-tune."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        body = {key: value for key, value in fields.items() if value is not None}
        result = self._t.request("POST", COLLECTION, json=body, headers=headers, idempotent=False)
        return Finetune.from_wire(result, f"POST {COLLECTION}")

    def list(
        self, status: str | None = None, limit: int | None = None, offset: int | None = None
    ) -> FinetunePage:
        """`GET /finetune/jobs` -> the page: `jobs` (newest first) and `count`.

        `status`, `limit` and `offset` are additive filters of the local control plane (the
        real platform ignores them and answers every job)."""
        where = f"GET {COLLECTION}"
        params = {"status": status, "limit": limit, "offset": offset or None}
        result = self._t.request("GET", COLLECTION, params=params)
        if not isinstance(result, dict):
            return FinetunePage.from_wire(result, where)  # raises: not an object
        count = result.get("count")
        page = FinetunePage(
            jobs=Finetune.list_from_wire(result.get("jobs"), where),
            count=count if isinstance(count, int) and not isinstance(count, bool) else None,
        )
        page._raw = result
        return page

    def iter_all(self, status: str | None = None) -> Iterator[Finetune]:
        """Every fine-tune (optionally of one status), `page_size` a request, each once."""
        seen: set[str] = set()
        offset = 0
        while True:
            page = self.list(status=status, limit=self.page_size, offset=offset)
            fresh = [job for job in page.jobs if job.id not in seen]
            for job in fresh:
                seen.add(job.id)
                yield job
            offset += len(page.jobs)
            # A server without paging answers everything at once (more than a page, or a
            # repeat of what was seen): that was the last page.
            if len(page.jobs) < self.page_size or len(page.jobs) > self.page_size or not fresh:
                return
            if page.count is not None and offset >= page.count:
                return

    def list_all(self, status: str | None = None) -> builtins.list[Finetune]:
        return builtins.list(self.iter_all(status=status))

    def get(self, job_id: str, *, refresh: bool = False) -> Finetune:
        """`GET /finetune/jobs/{id}[?refresh=true]` -> the Finetune (404 when not yours)."""
        path = _item(job_id)
        params = {"refresh": "true"} if refresh else None
        return Finetune.from_wire(self._t.request("GET", path, params=params), f"GET {path}")

    def logs(
        self, job_id: str, tail: int | None = None, offset: int | None = None
    ) -> dict[str, Any]:
        """`GET /finetune/jobs/{id}/logs?tail=N` -> `{"job_id", "logs"}`; no `tail`: the whole
        log (the API's default is its last 100 lines, so a very large tail is sent). A server
        that also takes `offset` (bytes) and answers `next_offset` is read from there on."""
        params = {"tail": WHOLE_LOG if tail is None else tail, "offset": offset}
        result: dict[str, Any] = self._t.request("GET", _item(job_id) + "/logs", params=params)
        return result

    def cancel(self, job_id: str) -> dict[str, Any]:
        """`POST /finetune/jobs/{id}/cancel` -> `{success, message}`; safe to retry (a second
        cancel is a 400, never a second effect)."""
        result: dict[str, Any] = self._t.request("POST", _item(job_id) + "/cancel", idempotent=True)
        return result

    def refresh(self, job_id: str) -> Finetune:
        """`POST /finetune/jobs/{id}/refresh`: ask the executor, then -> the Finetune."""
        path = _item(job_id) + "/refresh"
        return Finetune.from_wire(self._t.request("POST", path, idempotent=True), f"POST {path}")

    def delete(self, job_id: str) -> dict[str, Any]:
        """`DELETE /finetune/jobs/{id}` -> `{success, message}` (400 while it runs)."""
        result: dict[str, Any] = self._t.request("DELETE", _item(job_id))
        return result

    def deploy(self, job_id: str, **fields: Any) -> dict[str, Any]:
        """`POST /finetune/jobs/{id}/deploy` with the Deploy fields (§6.8: gpu_type,
        instance_name, max_price, port) -> `{success, instance_id, endpoint_url, ...}`."""
        body = {key: value for key, value in fields.items() if value is not None}
        result: dict[str, Any] = self._t.request(
            "POST", _item(job_id) + "/deploy", json=body, idempotent=False
        )
        return result

    # -- outputs (local control plane) ----------------------------------------------------

    def outputs(self, job_id: str) -> dict[str, Any]:
        """`GET /finetune/jobs/{id}/outputs`: the files the training wrote (adapter, ...)."""
        result: dict[str, Any] = self._t.request("GET", _item(job_id) + "/outputs")
        return result

    def download_output(self, job_id: str, path: str) -> bytes:
        """The bytes of one output file (`path` as listed by `outputs`)."""
        response: httpx.Response = self._t.request(
            "GET", _item(job_id) + "/outputs", params={"path": path}, raw=True
        )
        return response.content

    def download_archive(self, job_id: str) -> bytes:
        """Every output file as one gzipped tar (`?archive=tar.gz`)."""
        response: httpx.Response = self._t.request(
            "GET", _item(job_id) + "/outputs", params={"archive": "tar.gz"}, raw=True
        )
        return response.content
