"""`/api/v1/jobs`: run a command on a GPU machine once, then destroy the machine (contract §5).

Paths are the contract's canonical forms: the collection has a trailing slash
(`POST /api/v1/jobs/`, `GET /api/v1/jobs/`), everything below it has none.
"""

from __future__ import annotations

import builtins
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from dumont_plan.client.base import Transport
from dumont_plan.client.finetune import ProgressReader
from dumont_plan.client.parallel import read_all
from dumont_plan.errors import UnexpectedResponseError
from dumont_plan.wire import FINISHED_JOB_STATUSES
from dumont_plan.wire_models import Job, JobPage

if TYPE_CHECKING:
    import httpx  # annotations only: the transport loads it when it sends

COLLECTION = "/api/v1/jobs/"
WORKDIRS = "/api/v1/jobs/workdirs"
SCHEDULES = "/api/v1/jobs/schedules"
PAGE_SIZE = 100  # the contract's maximum `limit`
LIST_WORKERS = 4  # pages of one list read at a time once the first page gave `total`

# Contract §5.4: the statuses after which a job never changes again.
FINISHED_STATUSES = frozenset(FINISHED_JOB_STATUSES)


def is_finished(job: Job) -> bool:
    """True once a job reached a final status (completed, failed, cancelled or timeout)."""
    return job.is_finished


def log_command(job_id: str, error_message: object = None) -> str:
    """`dumont job logs ID`, with the `--rank` whose log says why when a rank failed the job
    (the local control plane's `rank 1: command exited with code 3`)."""
    failed = re.match(r"rank (\d+): ", error_message) if isinstance(error_message, str) else None
    rank = int(failed.group(1)) if failed else 0
    return f"dumont job logs {job_id}" + (f" --rank={rank}" if rank else "")


def _schedule(answer: Any, method: str) -> dict[str, Any]:
    if not isinstance(answer, dict) or not isinstance(answer.get("id"), str):
        raise UnexpectedResponseError(f"{method} {SCHEDULES}: the answer is not a schedule")
    return answer


def _item(job_id: str) -> str:
    return f"/api/v1/jobs/{quote(str(job_id), safe='')}"


class JobsAPI:
    """The Jobs resource group; jobs come back as `Job` read models (`job.raw`: the JSON)."""

    def __init__(self, transport: Transport, page_size: int = PAGE_SIZE) -> None:
        self._t = transport
        self.page_size = page_size
        # Whether the last `list_all` surely holds every job: False after a full first page
        # whose `total` is its own size (all there is, or a server that ignores `offset`, as
        # the real platform does: the newest `limit` jobs, `total` = their number), or when a
        # later page repeated the first. A job missing from such a list may still exist.
        self.complete = True

    def create(self, idempotency_key: str | None = None, **fields: Any) -> Job:
        """`POST /api/v1/jobs/` with the CreateJob fields (contract §5.2); 201 -> the Job.

        Never retried (it creates something). With `idempotency_key` the server replays the
        first answer for a repeated key instead of creating a second job.
        """
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        body = {key: value for key, value in fields.items() if value is not None}
        result = self._t.request("POST", COLLECTION, json=body, headers=headers, idempotent=False)
        return Job.from_wire(result, f"POST {COLLECTION}")

    def list(
        self, limit: int | None = None, status: str | None = None, offset: int | None = None
    ) -> JobPage:
        """`GET /api/v1/jobs/` -> the page: `jobs` (newest first) and `total`.

        `offset` is an additive extension of the local control plane (pagination).
        """
        params = {"limit": limit, "status": status, "offset": offset or None}
        result = self._t.request("GET", COLLECTION, params=params)
        where = f"GET {COLLECTION}"
        if not isinstance(result, dict):
            return JobPage.from_wire(result, where)  # raises: not an object
        total = result.get("total")
        page = JobPage(
            jobs=Job.list_from_wire(result.get("jobs"), where),
            total=total if isinstance(total, int) and not isinstance(total, bool) else None,
        )
        page._raw = result
        return page

    def iter_all(self, status: str | None = None) -> Iterator[Job]:
        """Every job (optionally of one status), one page of `page_size` per request.

        The first page's `total` says how many pages are left: those are fetched concurrently
        (`LIST_WORKERS` at a time), the same requests as one after another, yielded in order.
        """
        seen: set[str] = set()
        for page in self._pages(status):
            for job in page.jobs:
                # Jobs created while paging shift later pages by one: skip what was seen.
                if job.id not in seen:
                    seen.add(job.id)
                    yield job

    def list_all(self, status: str | None = None) -> builtins.list[Job]:
        """All jobs, paged with `offset` (`page_size` per request; few requests for `plan`)."""
        return list(self.iter_all(status=status))

    def _pages(self, status: str | None) -> Iterator[JobPage]:
        """The pages up to the first short one or `total`, in order (offset += jobs received)."""
        size = self.page_size
        offset, total = 0, None
        first: builtins.list[str] | None = None
        self.complete = True
        while True:
            # Once a full page gave `total`, the offsets up to it are known: read them together.
            offsets = [offset] if total is None else range(offset, total, size)
            for page in self._read_pages(offsets, status):
                ids = [job.id for job in page.jobs]
                if first is None:
                    first = ids
                    self.complete = not (len(ids) == size and page.total == size)
                elif ids == first:  # `offset` ignored: the same first page again
                    self.complete = False
                    return
                yield page
                offset += len(page.jobs)
                total = page.total
                if len(page.jobs) < size or (total is not None and offset >= total):
                    return

    def _read_pages(self, offsets: Sequence[int], status: str | None) -> builtins.list[JobPage]:
        """The pages at `offsets`, in their order; more than one are read concurrently."""

        def one(offset: int) -> JobPage:
            return self.list(limit=self.page_size, status=status, offset=offset)

        return read_all(one, offsets, LIST_WORKERS)

    def upload_workdir(
        self, archive: Path, progress: Callable[[int, int], None] | None = None
    ) -> dict[str, Any]:
        """`POST /api/v1/jobs/workdirs` (additive) with a packed workdir (`client.workdir.pack`)
        as the multipart field `file`, streamed from disk -> `{workdir_id, sha256, size, files}`.
        Not retried (a repeat would only store the same content again)."""
        with archive.open("rb") as file:
            total = os.fstat(file.fileno()).st_size
            reader = ProgressReader(file, total, progress)
            files = {"file": ("workdir.tar.gz", reader, "application/gzip")}
            answer = self._t.request("POST", WORKDIRS, files=files, idempotent=False)
        if not isinstance(answer, dict) or not isinstance(answer.get("workdir_id"), str):
            raise UnexpectedResponseError(f"POST {WORKDIRS}: the answer has no workdir_id")
        return answer

    def get(self, job_id: str) -> Job:
        """`GET /api/v1/jobs/{id}` -> the Job (404 when unknown, 403 for someone else's)."""
        path = _item(job_id)
        return Job.from_wire(self._t.request("GET", path), f"GET {path}")

    def cancel(self, job_id: str) -> Job:
        """`POST /api/v1/jobs/{id}/cancel` -> the cancelled Job.

        Safe to retry: a second cancel is a 400 "already finished", never a second effect.
        """
        path = _item(job_id) + "/cancel"
        return Job.from_wire(self._t.request("POST", path, idempotent=True), f"POST {path}")

    def logs(
        self,
        job_id: str,
        tail: int | None = None,
        offset: int | None = None,
        rank: int | None = None,
    ) -> dict[str, Any]:
        """`GET /api/v1/jobs/{id}/logs[?tail=N|?offset=B]` -> `{"job_id", "logs"}`; no tail =
        whole log. The local control plane adds `next_offset` and `size` (bytes) and takes
        `offset`: only what follows that byte (a server without it ignores it: whole log), and
        `rank`: that rank's log of a job of several nodes (capability `jobs.logs-rank`)."""
        params = {"tail": tail, "offset": offset, "rank": rank}
        result: dict[str, Any] = self._t.request("GET", _item(job_id) + "/logs", params=params)
        return result

    # -- cron schedules (local control plane, capability `jobs.schedules`) --

    def create_schedule(
        self,
        cron: str,
        timezone: str,
        job: dict[str, Any],
        name: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """`POST /api/v1/jobs/schedules`: run `job` (a CreateJob body) at each due time. With
        `idempotency_key` a repeated request answers the first one's schedule."""
        body = {"cron": cron, "timezone": timezone, "job": job, "name": name}
        body = {key: value for key, value in body.items() if value is not None}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        answer = self._t.request("POST", SCHEDULES, json=body, headers=headers, idempotent=False)
        return _schedule(answer, "POST")

    def get_schedule(self, schedule_id: str) -> dict[str, Any]:
        """`GET /api/v1/jobs/schedules/{id}` -> the schedule (404 when unknown or another's)."""
        path = f"{SCHEDULES}/{quote(str(schedule_id), safe='')}"
        return _schedule(self._t.request("GET", path), "GET")

    def change_schedule(
        self, schedule_id: str, cron: str | None = None, timezone: str | None = None
    ) -> dict[str, Any]:
        """`PATCH /api/v1/jobs/schedules/{id}`: a new cron and/or timezone, same schedule."""
        path = f"{SCHEDULES}/{quote(str(schedule_id), safe='')}"
        body = {key: value for key, value in (("cron", cron), ("timezone", timezone)) if value}
        return _schedule(self._t.request("PATCH", path, json=body, idempotent=True), "PATCH")

    def move_start(self, job_id: str, start_at: str | None) -> Job:
        """`PATCH /api/v1/jobs/{id}` (local control plane): a waiting job's new `start_at`
        (None: start it now); 400 once it no longer waits."""
        path = _item(job_id)
        answer = self._t.request("PATCH", path, json={"start_at": start_at}, idempotent=True)
        return Job.from_wire(answer, f"PATCH {path}")

    def list_schedules(self) -> builtins.list[dict[str, Any]]:
        """`GET /api/v1/jobs/schedules` -> your schedules, oldest first."""
        answer = self._t.request("GET", SCHEDULES)
        items = answer.get("schedules") if isinstance(answer, dict) else None
        if not isinstance(items, builtins.list):
            raise UnexpectedResponseError(f"GET {SCHEDULES}: the answer has no schedules list")
        return [_schedule(item, "GET") for item in items]

    def schedule_action(self, schedule_id: str, action: str) -> dict[str, Any]:
        """`POST /api/v1/jobs/schedules/{id}/pause|resume` -> the schedule; `delete` -> the
        answer of `DELETE /api/v1/jobs/schedules/{id}`."""
        path = f"{SCHEDULES}/{quote(str(schedule_id), safe='')}"
        if action == "delete":
            result: dict[str, Any] = self._t.request("DELETE", path, idempotent=True)
            return result
        return _schedule(self._t.request("POST", f"{path}/{action}", idempotent=True), "POST")

    def outputs(self, job_id: str) -> dict[str, Any]:
        """`GET /api/v1/jobs/{id}/outputs` (local control plane): the kept output files."""
        result: dict[str, Any] = self._t.request("GET", _item(job_id) + "/outputs")
        return result

    def download_output(self, job_id: str, path: str) -> bytes:
        """The bytes of one kept output file (`path` as listed by `outputs`)."""
        response: httpx.Response = self._t.request(
            "GET", _item(job_id) + "/outputs/" + quote(path.lstrip("/")), raw=True
        )
        return response.content


class LogSource(Protocol):
    """What `LogCursor` reads: a `logs(id, tail=, offset=)` call (jobs' and fine-tunes')."""

    def logs(
        self, job_id: str, tail: int | None = None, offset: int | None = None
    ) -> dict[str, Any]: ...


class LogCursor:
    """Reads a job's log incrementally: each `read()` returns only the lines not returned yet.

    Against a server that answers `next_offset` (the local control plane), each read asks only
    for the bytes after the last one received (`?offset=`), so a long log is never downloaded
    twice. Against one that answers with the whole log, the cursor keeps the character offset
    just after the last newline it returned. Either way a line still being written is held back
    until its newline arrives, or until `read(final=True)` (call it once the job is finished).
    A log that became shorter was restarted (a retry): it is read again from its start and
    `restarts` goes up.
    """

    def __init__(self, jobs: LogSource, job_id: str) -> None:
        self.jobs = jobs
        self.job_id = job_id
        self.offset = 0  # bytes with `by_offset`, else characters of the whole log
        self.by_offset: bool | None = None  # None until the first answer says
        self.partial = ""  # with `by_offset`: the received start of an unended line
        self.restarts = 0

    def start(self, tail: int | None = None) -> builtins.list[str]:
        """The last `tail` complete lines so far (every line with None); follow from there."""
        if tail is None:
            return self.read()
        answer = self.jobs.logs(self.job_id, tail=tail)
        text = str(answer.get("logs") or "")
        end = text.rfind("\n") + 1
        lines = text[:end].split("\n")[:-1]
        self.by_offset = isinstance(answer.get("next_offset"), int)
        if self.by_offset:
            self.offset = int(answer["next_offset"])
            self.partial = text[end:]
        else:  # a server without offsets: follow the whole log's characters
            text = self._fetch()
            end = text.rfind("\n") + 1
            lines = text[:end].split("\n")[:-1]
            self.offset = end
        return lines[len(lines) - tail :] if tail > 0 else []

    def read(self, final: bool = False) -> builtins.list[str]:
        """The complete lines added since the last call (with `final`, also an unended last one)."""
        if self.by_offset is not False:
            answer = self.jobs.logs(self.job_id, offset=self.offset)
            self.by_offset = isinstance(answer.get("next_offset"), int)
            if self.by_offset:
                return self._read_by_offset(answer, final)
            text = str(answer.get("logs") or "")
        else:
            text = self._fetch()
        if len(text) < self.offset:
            self.offset = 0
            self.restarts += 1
        end = len(text) if final else text.rfind("\n") + 1
        if end <= self.offset:
            return []
        chunk = text[self.offset : end]
        self.offset = end
        return chunk.removesuffix("\n").split("\n")

    def _read_by_offset(self, answer: dict[str, Any], final: bool) -> builtins.list[str]:
        size = answer.get("size")
        if isinstance(size, int) and size < self.offset:  # the log restarted
            self.restarts += 1
            self.offset, self.partial = 0, ""
            answer = self.jobs.logs(self.job_id, offset=0)
        text = self.partial + str(answer.get("logs") or "") + self._more(answer)
        end = len(text) if final else text.rfind("\n") + 1
        self.partial = text[end:]
        if end == 0:
            return []
        return text[:end].removesuffix("\n").split("\n")

    def _more(self, answer: dict[str, Any]) -> str:
        """The rest of the log after `answer` when the server answered in pieces (a big log)."""
        parts: builtins.list[str] = []
        next_offset = int(answer.get("next_offset") or 0)
        size = int(answer.get("size") or 0)
        while next_offset < size:
            piece = self.jobs.logs(self.job_id, offset=next_offset)
            moved = int(piece.get("next_offset") or 0)
            if moved <= next_offset:
                break
            parts.append(str(piece.get("logs") or ""))
            next_offset, size = moved, int(piece.get("size") or 0)
        self.offset = max(self.offset, next_offset)
        return "".join(parts)

    def _fetch(self) -> str:
        return str(self.jobs.logs(self.job_id).get("logs") or "")
