"""Showing jobs and waiting for them: fields, the live status line, log streaming, exit codes.

Shared by `dumont job status|logs|wait` and `create --wait/--follow`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol, TypeVar

from dumont_plan.apply.waits import WaitResult, wait_for
from dumont_plan.cli.output import OutputFormat, StatusLine, emit_json, err_console, print_fields
from dumont_plan.client import DumontClient
from dumont_plan.client.base import error_message
from dumont_plan.client.jobs import JobsAPI, LogCursor, LogSource, is_finished, log_command
from dumont_plan.errors import (
    BadRequestError,
    DumontError,
    NotFoundError,
    UnprocessableError,
    WaitFailedError,
    WaitInterrupted,
    WaitTimeoutError,
)
from dumont_plan.wire_models import Job

LIST_COLUMNS = ("id", "name", "status", "gpu_type", "duration", "total_cost")
STATUS_FIELDS = (
    "id",
    "name",
    "status",
    "source",
    "gpu_type",
    "instance_id",
    "created_at",
    "started_at",
    "completed_at",
    "duration",
    "total_cost",
    "gpu_hours",
    "error_message",
)


@contextmanager
def about(
    noun: str, group: str, item_id: str, where: str, listing: str | None = None
) -> Iterator[None]:
    """Say which command and object an API refusal is about, in the user's words: a 404 is
    `no <noun> ID (or it is not yours)`, a 400 the server's reason; `group` is the CLI group
    (`job`, `finetune`) its hints name; `listing` the command that lists such objects, when
    it is not `dumont <group> list` (it is also the 400's hint then)."""
    shown = listing or f"dumont {group} list"
    try:
        yield
    except NotFoundError as exc:
        raise NotFoundError(
            f"{where}: no {noun} {item_id} (or it is not yours)",
            f"see your {noun}s with `{shown}`",
            status_code=exc.status_code,
            body=exc.body,
        ) from exc
    except BadRequestError as exc:
        raise BadRequestError(
            f"{where}: {error_message(exc.body, exc.message)}",
            f"see it with `{listing or f'dumont {group} status {item_id}'}`",
            status_code=exc.status_code,
            body=exc.body,
        ) from exc


@contextmanager
def about_rank(rank: int | None, where: str) -> Iterator[None]:
    """A 422 about `rank` of a log read: a rank the job does not have, in the flag's words."""
    try:
        yield
    except UnprocessableError as exc:
        said = [str(d.get("msg")) for d in exc.details if "rank" in (d.get("loc") or [])]
        if not said:
            raise
        raise DumontError(
            f"{where}: --rank={rank}: {said[0]}", "leave out --rank for rank 0's log"
        ) from None


def about_job(job_id: str, where: str) -> AbstractContextManager[None]:
    """`about` a job."""
    return about("job", "job", job_id, where)


def money(value: float | None) -> str:
    return f"${value:.4f}" if value is not None else "-"


def list_row(job: Job) -> dict[str, object]:
    """Every field the server sent (its spelling), with the money fields formatted."""
    row: dict[str, object] = {**job.raw, "total_cost": money(job.total_cost)}
    if job.price_per_hour is not None:
        row["price_per_hour"] = money(job.price_per_hour) + "/h"
    return row


def print_job(job: Job) -> None:
    """The contract's fields in a fixed order (the nodes after the GPU, when the server says),
    then any extra field the server sent that is set."""
    raw = job.raw
    fields = [*STATUS_FIELDS]
    if raw.get("num_nodes") is not None:
        fields.insert(fields.index("gpu_type") + 1, "num_nodes")
    extras = [k for k in raw if k not in fields and raw[k] is not None]
    print_fields(list_row(job), [*fields, *extras])


def nodes_text(job: Job) -> str:
    """` on 2 nodes` for a job of several machines (additive `num_nodes`), else nothing."""
    nodes = job.raw.get("num_nodes")
    return f" on {nodes} nodes" if isinstance(nodes, int) and nodes > 1 else ""


class RankLogs:
    """`client.jobs` (or any `Watched` jobs API) reading one rank's log (`?rank=N`); `on_get`
    sees each status read."""

    def __init__(
        self, jobs: JobsAPI, rank: int | None, on_get: Callable[[Job], None] | None = None
    ) -> None:
        self.jobs = jobs
        self.rank = rank
        self.on_get = on_get

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if self.on_get is not None:
            self.on_get(job)
        return job

    def logs(
        self, job_id: str, tail: int | None = None, offset: int | None = None
    ) -> dict[str, Any]:
        return self.jobs.logs(job_id, tail=tail, offset=offset, rank=self.rank)


def created_text(job: Job) -> str:
    """`Created job job_1 (train): pending; RTX 4090 spot at $0.1019/h`."""
    text = f"Created job {job.id} ({job.name}): {job.status}"
    if job.price_per_hour is not None:
        spot = job.use_spot
        kind = "" if spot is None else " spot" if spot else " on-demand"
        text += f"; {job.gpu_type}{kind}{nodes_text(job)} at {money(job.price_per_hour)}/h"
    return text + starts_text(job)


def starts_text(job: Job) -> str:
    """`; starts at 2026-12-05T02:00:00 UTC` for a scheduled job (additive `start_at`)."""
    start = job.raw.get("start_at")
    return f"; starts at {start} UTC" if job.status == "scheduled" and start else ""


def status_text(job: Job) -> str:
    text = f"{job.id} ({job.name}): {job.status}"
    if job.duration and job.duration != "N/A":
        text += f", {job.duration}"
    if job.total_cost:
        text += f", {money(job.total_cost)}"
    return text + starts_text(job)


def is_completed(job: Job) -> bool:
    return job.status == "completed"


def write_line(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def log_writer(job_id: str, output: OutputFormat) -> Callable[[str], None]:
    """Plain lines for people; one `{"job_id", "line"}` JSON object per line for scripts."""
    if output is OutputFormat.json:
        return lambda line: write_line(json.dumps({"job_id": job_id, "line": line}))
    return write_line


class Finishes(Protocol):
    @property
    def is_finished(self) -> bool: ...


Run = TypeVar("Run", bound=Finishes)
Run_co = TypeVar("Run_co", bound=Finishes, covariant=True)


class Watched(LogSource, Protocol[Run_co]):
    """What `stream_logs` reads: a run's status (`get`) and its log (`client.jobs`,
    `client.finetune`)."""

    def get(self, job_id: str) -> Run_co: ...


def stream_logs(
    api: Watched[Run],
    job_id: str,
    write: Callable[[str], None],
    *,
    tail: int | None,
    done: Callable[[Run], bool],
    failed: Callable[[Run], bool],
    timeout: float | None,
    poll: float,
) -> WaitResult[Run]:
    """Print the log (its last `tail` lines first) and each new line until the run finishes.

    Every tick reads the status first and the log second, so the read after the run finished
    holds the whole log: no line is lost at the end, and the cursor prints none twice.
    """
    cursor = LogCursor(api, job_id)
    for line in cursor.start(tail):
        write(line)

    def tick(run: Run) -> None:
        restarts = cursor.restarts
        lines = cursor.read(final=run.is_finished)
        if cursor.restarts != restarts:
            err_console.print("(the log restarted: a retry)", markup=False)
        for line in lines:
            write(line)

    return wait_for(
        lambda: api.get(job_id),
        done=done,
        failed=failed,
        timeout=timeout,
        on_tick=tick,
        poll=poll,
    )


def follow_logs(
    client: DumontClient,
    jobs: RankLogs,
    job_id: str,
    *,
    tail: int | None,
    poll: float,
    output: OutputFormat,
) -> None:
    """`dumont job logs --follow`: stream one rank's log until the job ends; a job still
    `scheduled` is said once (its log starts with it); Ctrl-C says it goes on (exit 130)."""
    said: list[str] = []

    def announce(job: Job) -> None:
        if job.status == "scheduled" and not said:
            said.append(job.status)
            err_console.print(
                f"{status_text(job)}: its log starts then (Ctrl-C stops following, not the job)",
                markup=False,
                highlight=False,
            )

    jobs.on_get = announce
    try:
        with about_job(job_id, "job logs"), about_rank(jobs.rank, "job logs"):
            result = stream_logs(
                jobs,
                job_id,
                log_writer(job_id, output),
                tail=tail,
                done=is_finished,
                failed=lambda job: False,
                timeout=None,
                poll=poll,
            )
    except KeyboardInterrupt:
        raise stopped_waiting(client, job_id, "following", jobs.rank) from None
    if output is OutputFormat.table:
        err_console.print(status_text(result.state), markup=False, highlight=False)


def finish_wait(
    client: DumontClient,
    job_id: str,
    *,
    timeout: float | None,
    poll: float,
    follow: bool,
    output: OutputFormat,
) -> Job:
    """Wait for a job to finish (streaming its log with `follow`); raise on failure/timeout.

    Exit codes through the error boundary: completed returns; failed/cancelled/timeout raise
    WaitFailedError (5); the wait's own `timeout` raises WaitTimeoutError (4); Ctrl-C raises
    WaitInterrupted (130) saying the job goes on, in which state, and how to stop it.
    """
    try:
        result = _wait(client, job_id, timeout=timeout, poll=poll, follow=follow, output=output)
    except KeyboardInterrupt:
        raise stopped_waiting(client, job_id) from None
    job = result.state
    if output is OutputFormat.json and follow:
        write_line(json.dumps(job.raw))
    elif output is OutputFormat.json:
        emit_json(job.raw)
    elif not follow:
        print_job(job)
    if result.outcome == "timeout":
        raise WaitTimeoutError(
            f"job {job_id} is still {job.status} after {timeout:g}s of waiting",
            f"wait again with `dumont job wait {job_id}` (or cancel it: `dumont job cancel "
            f"{job_id}`)",
        )
    if result.outcome == "failed":
        reason = f": {job.error_message}" if job.error_message else ""
        raise WaitFailedError(
            f"job {job_id} ended {job.status}{reason}",
            f"see its log: `{log_command(job_id, job.error_message)}`",
        )
    if follow and output is OutputFormat.table:
        err_console.print(status_text(job), markup=False, highlight=False)
    return job


def _wait(
    client: DumontClient,
    job_id: str,
    *,
    timeout: float | None,
    poll: float,
    follow: bool,
    output: OutputFormat,
) -> WaitResult[Job]:
    if follow:
        return stream_logs(
            client.jobs,
            job_id,
            log_writer(job_id, output),
            tail=None,
            done=is_completed,
            failed=is_finished,
            timeout=timeout,
            poll=poll,
        )
    with StatusLine(err_console) as line:
        return wait_for(
            lambda: client.jobs.get(job_id),
            done=is_completed,
            failed=is_finished,
            timeout=timeout,
            on_tick=lambda job: line.update(status_text(job), key=f"{job.id}: {job.status}"),
            poll=poll,
        )


def stopped_waiting(
    client: DumontClient, job_id: str, doing: str = "waiting", rank: int | None = None
) -> WaitInterrupted:
    """What Ctrl-C during a wait (`doing`: waiting, following) means: the job's real state,
    and that it goes on; the hint follows the same rank's log again."""
    try:
        job: Job | None = client.jobs.get(job_id)
    except (DumontError, KeyboardInterrupt):  # a second Ctrl-C, or the API gone: say less
        job = None
    if job is not None and job.is_finished:
        return WaitInterrupted(
            f"stopped {doing}: job {job_id} has {job.status}",
            f"see it with `dumont job status {job_id}`",
        )
    state = f"is {job.status}" if job is not None else "was not finished"
    again = f"dumont job logs {job_id} --follow" + (f" --rank={rank}" if rank else "")
    return WaitInterrupted(
        f"stopped {doing}: job {job_id} {state} and goes on on the server",
        f"follow it again: `{again}`; stop it: `dumont job cancel {job_id}`",
    )
