"""Showing fine-tunes and waiting for them: fields, progress with ETA, log streaming, Ctrl-C.

Shared by `dumont finetune status|logs|wait` and `create --wait/--follow`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import typer

from dumont_plan.apply.waits import wait_for
from dumont_plan.cli.job_watch import about, log_writer, stream_logs, write_line
from dumont_plan.cli.output import OutputFormat, StatusLine, emit_json, err_console, print_fields
from dumont_plan.client import DumontClient
from dumont_plan.errors import WaitFailedError, WaitTimeoutError
from dumont_plan.wire_models import Finetune

LIST_COLUMNS = ("id", "name", "status", "base_model", "gpu_type", "progress", "loss")
STATUS_FIELDS = (
    "id",
    "name",
    "status",
    "base_model",
    "dataset_source",
    "dataset_path",
    "dataset_format",
    "gpu_type",
    "num_gpus",
    "progress",
    "loss",
    "created_at",
    "started_at",
    "completed_at",
    "output_model_path",
    "error_message",
)


def about_finetune(job_id: str, where: str) -> AbstractContextManager[None]:
    """Say which command and fine-tune an API refusal is about (`about` of jobs)."""
    return about("fine-tune", "finetune", job_id, where)


def progress_text(job: Finetune) -> str:
    """`step 12/40 (30%), epoch 1` or `-` before the first step."""
    if not job.total_steps:
        return "-"
    text = f"step {job.current_step}/{job.total_steps} ({job.progress_percent:.0f}%)"
    if job.current_epoch:
        text += f", epoch {job.current_epoch}"
    return text


def row(job: Finetune) -> dict[str, object]:
    """Every field the server sent, with progress and loss readable."""
    return {
        **job.raw,
        "progress": progress_text(job),
        "loss": f"{job.loss:.4f}" if job.loss is not None else "-",
    }


def print_finetune(job: Finetune) -> None:
    """The contract's fields in a fixed order, the config, then any extra field that is set."""
    raw = row(job)
    skip = {*STATUS_FIELDS, "config", "current_epoch", "current_step", "total_steps"}
    skip |= {"progress_percent", "user_id"}
    extras = [k for k in raw if k not in skip and raw[k] is not None]
    config = {f"config.{k}": v for k, v in sorted(job.config.items())}
    print_fields({**raw, **config}, [*STATUS_FIELDS, *config, *extras])


def clock(seconds: float) -> str:
    """`4:05`, or `1:04:05` past an hour."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Eta:
    """Estimates the time left from the steps seen move during this wait (steps per second
    since the first observed step, so a model download before the first step is not counted)."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self.now = now
        self.first: tuple[float, int] | None = None

    def left(self, job: Finetune) -> float | None:
        step, total = job.current_step, job.total_steps
        if not total or step <= 0:
            return None
        now = self.now()
        if self.first is None or step < self.first[1]:
            self.first = (now, step)
            return None
        start, start_step = self.first
        if step == start_step or now <= start:
            return None
        rate = (step - start_step) / (now - start)
        return max(0, total - step) / rate


def wait_text(job: Finetune, eta: Eta) -> str:
    """`ft_1 (demo): running, step 12/40 (30%), loss 1.2345, ETA 0:42`."""
    text = f"{job.id} ({job.name}): {job.status}"
    if job.total_steps:
        text += ", " + progress_text(job)
    if job.loss is not None:
        text += f", loss {job.loss:.4f}"
    left = eta.left(job)
    if left is not None and not job.is_finished:
        text += f", ETA {clock(left)}"
    return text


def is_completed(job: Finetune) -> bool:
    return job.status == "completed"


def is_finished(job: Finetune) -> bool:
    return job.is_finished


@contextmanager
def goes_on_after_ctrl_c(job_id: str) -> Iterator[None]:
    """Ctrl-C stops the waiting, not the fine-tune: say so, and how to cancel it (exit 130)."""
    try:
        yield
    except KeyboardInterrupt:
        err_console.print(
            f"Stopped waiting; the fine-tune {job_id} goes on. "
            f"Follow it: dumont finetune wait {job_id}; cancel it: dumont finetune cancel "
            f"{job_id}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None


def finish_wait(
    client: DumontClient,
    job_id: str,
    *,
    timeout: float | None,
    poll: float,
    follow: bool,
    output: OutputFormat,
) -> Finetune:
    """Wait for a fine-tune to end (streaming its log with `follow`); exit codes through the
    error boundary: completed returns; failed/cancelled raise WaitFailedError (5); the wait's
    `timeout` raises WaitTimeoutError (4). Ctrl-C leaves it running (exit 130)."""
    with goes_on_after_ctrl_c(job_id):
        if follow:
            result = stream_logs(
                client.finetune,
                job_id,
                log_writer(job_id, output),
                tail=None,
                done=is_completed,
                failed=is_finished,
                timeout=timeout,
                poll=poll,
            )
        else:
            eta = Eta()
            with StatusLine(err_console) as line:
                result = wait_for(
                    lambda: client.finetune.get(job_id),
                    done=is_completed,
                    failed=is_finished,
                    timeout=timeout,
                    on_tick=lambda job: line.update(
                        wait_text(job, eta), key=f"{job.status} {job.current_step}"
                    ),
                    poll=poll,
                )
    job = result.state
    if output is OutputFormat.json and follow:
        write_line(json.dumps(job.raw))
    elif output is OutputFormat.json:
        emit_json(job.raw)
    elif not follow:
        print_finetune(job)
    if result.outcome == "timeout":
        raise WaitTimeoutError(
            f"fine-tune {job_id} is still {job.status} after {timeout:g}s of waiting",
            f"wait again with `dumont finetune wait {job_id}` (or cancel it: "
            f"`dumont finetune cancel {job_id}`)",
        )
    if result.outcome == "failed":
        reason = f": {job.error_message}" if job.error_message else ""
        raise WaitFailedError(
            f"fine-tune {job_id} ended {job.status}{reason}",
            f"see its log: `dumont finetune logs {job_id}`",
        )
    if follow and output is OutputFormat.table:
        err_console.print(wait_text(job, Eta()), markup=False, highlight=False)
    return job
