"""Fine-tunes as SkyPilot managed jobs: the `skypilot` executor (`--executor=skypilot`).

`finetunes.py` keeps the row, the per-user queue and the inputs (the checked dataset in
`inputs/`) as for the local executor, and hands these steps to this module for a fine-tune
whose row says `executor = 'skypilot'`:

- launch (status `queued`): the fine-tune rendered by `skypilot_task.render_finetune_task`,
  the same task `dumont finetune create --dry-run` prints: the trainer script
  (`server/finetune/trainer.py`) and the checked dataset as `file_mounts`, a local base-model
  folder too; accelerators `<gpu_type>:<num_gpus>` (§6.6 names), `use_spot` (additive create
  field, default true as in §6.7); the output location (`sky_outputs`) mounted at the
  trainer's output dir. `HF_TOKEN` of the control plane's environment (the operator's, for
  gated base models: the run is the server's own trainer, not user code) is a SkyPilot secret,
  set on the task object in memory, never in `skypilot-task.json`. Launched in a thread.
- status: the contract's §6.5 table (`FINETUNE_STATUS`), read by each reconciler pass and by
  a refresh; SkyPilot's failure statuses the contract's table predates (`FAILED_SETUP`, ...)
  fail the fine-tune too (left unchanged, they would keep it unfinished for ever).
- progress: while it runs, from the trainer's log lines (`epoch E/N step S/T loss L`), fetched
  with `sky.jobs.tail_logs` on a refresh or a log read, and by the reconciler every
  `LOG_INTERVAL_SECONDS` (a bucket may be minutes behind; the log is what SkyPilot shows
  now). When it ends, the outputs are copied back first (`sky_outputs`); the trainer's
  `progress.jsonl` among them is then read as for a local run (final step, loss,
  `output_model_path`, its own error reason), and only then is the fine-tune finished, so a
  `completed` one has its outputs served.
- logs: the managed job's log (secret values masked) behind the `[dumont]` notes.
- cancel (any unfinished state): `sky.jobs.cancel`, then what it wrote is copied back.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from sqlite3 import Row
from types import ModuleType
from typing import Any

from dumont_plan.server.context import AppState
from dumont_plan.server.provider import executors, ft_runner, runner, sky_managed, sky_outputs
from dumont_plan.server.provider.job_secrets import mask_text
from dumont_plan.server.provider.sandbox import read_json, write_json_atomic
from dumont_plan.server.store import loads
from dumont_plan.skypilot_task import OUTPUT_DIR, render_finetune_task, task_name

logger = logging.getLogger("dumont_plan.server.sky_finetunes")
MODEL_MOUNT = "/opt/dumont/base-model"

# Contract §6.5: SkyPilot managed-job status -> ours; any other value leaves it unchanged.
FINETUNE_STATUS: dict[str, str] = {
    "PENDING": "queued",
    "SETTING_UP": "queued",
    "RUNNING": "running",
    "SUCCEEDED": "completed",
    "FAILED": "failed",
    "CANCELLED": "cancelled",
}
# Additive: SkyPilot's other failure statuses, and the error message of each.
FAILURES: dict[str, str] = {
    "FAILED": "the trainer failed on SkyPilot",
    "FAILED_SETUP": "the fine-tune's setup (packages, base model download) failed on SkyPilot",
    "FAILED_PRECHECKS": "SkyPilot refused the task (its prechecks failed)",
    "FAILED_NO_RESOURCE": "Failed to provision GPU: SkyPilot found no machine for it",
    "FAILED_CONTROLLER": "SkyPilot's jobs controller failed",
}
FINISHED = ("completed", "failed", "cancelled")
INTERRUPTED = (
    "the SkyPilot launch was interrupted by a control plane restart (the managed job may"
    " exist: see `sky jobs queue`)"
)
# The trainer's progress line (trainer.py): "epoch 1/3 step 4/12 loss 1.2345 lr 0.0002".
PROGRESS_LINE = re.compile(
    r"^epoch (\d+)/(\d+) step (\d+)/(\d+) loss ([-+0-9.eE]+|nan|inf)\b", re.MULTILINE
)

# A running fine-tune's log (its progress) is fetched by a reconciler pass at most this often;
# a refresh or a log read fetches it at once.
LOG_INTERVAL_SECONDS = 30.0

_launches = sky_managed.Launches("fine-tunes")
_log_fetched: dict[str, float] = {}  # fine-tune id -> time.monotonic() of its last fetch


def finetune_status(sky_status: str, current: str) -> str:
    """§6.5 (plus the failure statuses): a fine-tune's status after seeing `sky_status`."""
    if sky_status in FAILURES:
        return "failed"
    return FINETUNE_STATUS.get(sky_status, current)


def handles(row: Row) -> bool:
    return bool(row["executor"] == "skypilot")


def usable(state: AppState) -> str | None:
    """Why this server's fine-tunes cannot launch on SkyPilot now (None: they can)."""
    try:
        sky_managed.sdk(state, "fine-tunes")
    except RuntimeError as exc:
        return str(exc)
    return None


def _dir(state: AppState, ft_id: str) -> Path:
    return state.settings.sandboxes_dir / "finetunes" / ft_id


# -- rendering and launch -----------------------------------------------------------------------


def task_for(
    ft: Mapping[str, Any], dataset: str, use_spot: bool, outputs: str | None
) -> dict[str, Any]:
    """The task of the fine-tune `ft` (its row's fields): `dataset`, the checked file on this
    machine; `outputs`, its output location (None: none). No secret value is in it."""
    body: dict[str, Any] = {
        name: ft[name]
        for name in ("name", "base_model", "dataset_source", "dataset_path", "dataset_format")
    }
    body.update(gpu_type=ft["gpu_type"], num_gpus=ft["num_gpus"], config=loads(ft["config"]))
    mounts: dict[str, Any] = {}
    if str(ft["base_model"]).startswith("/"):  # a model folder the server reads: shipped
        mounts[MODEL_MOUNT] = ft["base_model"]
        body["base_model"] = MODEL_MOUNT
    task = render_finetune_task(body, local_dataset=dataset, use_spot=use_spot)
    task["name"] = task_name("finetune", f"{ft['id']}-{ft['name']}")
    task["file_mounts"].update(mounts)
    if outputs is not None:
        task["file_mounts"].update(sky_outputs.mounts(outputs, [OUTPUT_DIR]))
    del task["secrets"]  # set by `render` when there is a value for it
    return task


def render(state: AppState, row: Row, directory: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The task (no secret value in it) and its SkyPilot secrets."""
    spec = read_json(directory / runner.SPEC_FILE) or {}
    dataset = next(iter(sorted((directory / ft_runner.INPUTS_DIR).glob("dataset.*"))), None)
    if dataset is None:
        raise RuntimeError("the fine-tune's dataset is missing from its inputs")
    outputs = sky_outputs.location(state.settings, f"finetune-{row['id']}")
    sky_managed.update_state(directory, outputs=outputs)
    task = task_for(dict(row), str(dataset), bool(spec.get("use_spot", True)), outputs)
    token = os.environ.get("HF_TOKEN")
    secrets = {"HF_TOKEN": token} if token else {}
    if secrets:
        task["secrets"] = dict.fromkeys(secrets)
    return task, secrets


def launch(state: AppState, ft_id: str) -> None:
    """Start launching a claimed (`queued`) fine-tune on SkyPilot, in a thread."""
    from dumont_plan.server.provider import finetunes

    directory = _dir(state, ft_id)
    write_json_atomic(directory / sky_managed.STATE_FILE, {})

    def prepare() -> tuple[dict[str, Any], dict[str, str]]:
        row = state.store.query_one("SELECT * FROM finetune_jobs WHERE id = ?", (ft_id,))
        if row is None:
            raise RuntimeError(f"fine-tune {ft_id} was deleted")
        return render(state, row, directory)

    def cancelled() -> bool:
        row = state.store.query_one("SELECT status FROM finetune_jobs WHERE id = ?", (ft_id,))
        return row is not None and row["status"] == "cancelled"

    _launches.start(
        state,
        sky_managed.Launch(
            ft_id,
            directory,
            prepare,
            lambda message: finetunes.finish(state, ft_id, "failed", None, message),
            cancelled,
            lambda: _copy_outputs(state, ft_id, directory, None),
        ),
    )


# -- status, progress, logs, cancel -------------------------------------------------------------


def reconcile(state: AppState, rows: list[Row], with_log: bool = False) -> None:
    """One pass over unfinished SkyPilot fine-tunes (`with_log`: fetch their logs too)."""
    from dumont_plan.server.provider import finetunes

    ids = _launches.split(
        rows,
        lambda ft_id: _dir(state, ft_id),
        lambda row: finetunes.finish(state, row["id"], "failed", None, INTERRUPTED),
    )
    if not ids:
        return
    try:
        sky = sky_managed.sdk(state, "fine-tunes")
        records = sky_managed.queue(sky, list(ids))
    except Exception as exc:
        logger.warning("SkyPilot queue failed: %s", exc)
        return
    for record in records:
        owner = ids.get(int(sky_managed.field(record, "job_id")))
        if owner is not None:
            _apply(state, sky, owner, record, with_log)


def _apply(state: AppState, sky: ModuleType, row: Row, record: Any, with_log: bool) -> None:
    if sky_outputs.copying(row["id"]):
        return
    directory = _dir(state, row["id"])
    sky_status = str(sky_managed.field(record, "status"))
    status = finetune_status(sky_status, row["status"])
    last = _log_fetched.get(row["id"])
    due = status == "running" and (
        row["status"] != "running"  # it has just started training
        or last is None
        or time.monotonic() - last > LOG_INTERVAL_SECONDS
    )
    if with_log or due or status in FINISHED:
        fetch_log(state, sky, row, directory)
    if status in FINISHED:
        _log_fetched.pop(row["id"], None)
        error = None
        if status == "failed":
            reason = sky_managed.field(record, "failure_reason")
            error = FAILURES.get(sky_status, sky_status) + (f": {reason}" if reason else "")
        _copy_outputs(state, row["id"], directory, (status, error))
        return
    if status != row["status"]:
        from dumont_plan.server.provider import finetunes

        started = row["started_ts"] or (time.time() if status == "running" else None)
        state.store.execute(
            "UPDATE finetune_jobs SET status = ?, started_ts = ?"
            f" WHERE id = ? AND {finetunes.NOT_FINISHED_SQL}",
            (status, started, row["id"]),
        )


def progress_from_log(text: str, row: Row) -> dict[str, Any]:
    """The row's progress fields after the trainer's last progress line in `text` ({}: none)."""
    found = PROGRESS_LINE.findall(text)
    if not found:
        return {}
    epoch, _epochs, step, total, loss = found[-1]
    fields: dict[str, Any] = {
        "current_epoch": int(epoch),
        "current_step": int(step),
        "total_steps": int(total),
        "progress_percent": round(min(100.0, 100.0 * int(step) / int(total)), 2)
        if int(total)
        else float(row["progress_percent"]),
    }
    value = float(loss)
    if value == value and abs(value) != float("inf"):
        fields["loss"] = value
    return fields


def fetch_log(state: AppState, sky: ModuleType, row: Row, directory: Path) -> None:
    """The managed job's log into the fine-tune's log (the HF token masked), and the
    trainer's progress from it."""
    from dumont_plan.server.provider import finetunes

    sky_job_id = sky_managed.sky_job_id(directory)
    if sky_job_id is None:
        return
    try:
        text = sky_managed.tail(sky, sky_job_id)
    except Exception as exc:
        logger.warning("SkyPilot logs of fine-tune %s failed: %s", row["id"], exc)
        return
    _log_fetched[row["id"]] = time.monotonic()
    token = os.environ.get("HF_TOKEN")
    sky_managed.replace_log(directory, mask_text(text, [token] if token else []))
    fields = progress_from_log(text, row)
    if fields:
        assignments = ", ".join(f"{name} = ?" for name in fields)
        state.store.execute(
            f"UPDATE finetune_jobs SET {assignments} WHERE id = ? AND {finetunes.NOT_FINISHED_SQL}",
            (*fields.values(), row["id"]),
        )


def refresh(state: AppState, row: Row) -> None:
    """Read the managed job's status, log and progress now."""
    reconcile(state, [row], with_log=True)


def refresh_log(state: AppState, row: Row) -> None:
    """Before a read of a running fine-tune's logs: fetch what SkyPilot has."""
    try:
        sky = sky_managed.sdk(state, "fine-tunes")
    except RuntimeError:
        return
    fetch_log(state, sky, row, _dir(state, row["id"]))


def cancel(state: AppState, row: Row) -> None:
    """Cancel the managed job of a fine-tune just marked cancelled (a launch in flight does
    it when it returns), then copy back what it wrote."""
    directory = _dir(state, row["id"])
    found = sky_managed.launched(state, directory, "fine-tunes")
    if found is not None:
        sky_managed.cancel(*found)
        _copy_outputs(state, row["id"], directory, None)


def _copy_outputs(
    state: AppState, ft_id: str, directory: Path, ending: tuple[str, str | None] | None
) -> None:
    """Copy the outputs back, read the trainer's progress file among them, then end the
    fine-tune with `ending` (status, error; None: it has ended already)."""
    from dumont_plan.server.provider import finetunes

    def copied() -> None:
        row = state.store.query_one("SELECT * FROM finetune_jobs WHERE id = ?", (ft_id,))
        if row is not None:
            finetunes.sync_progress(state, row, None, finished_too=True)

    def end() -> None:
        if ending is None:
            return
        status, error = ending
        row = state.store.query_one("SELECT * FROM finetune_jobs WHERE id = ?", (ft_id,))
        if status == "failed" and row is not None and row["error_message"]:
            error = None  # the trainer's own reason, read from its progress file
        elif status == "failed" and error is not None and error.startswith(FAILURES["FAILED"]):
            error = f"{error}: {finetunes.last_log_line(state, ft_id)}"
        finetunes.finish(state, ft_id, status, None, error)

    sky_managed.copy_outputs(ft_id, directory, end, copied)


def skypilot_problem(state: AppState) -> str | None:
    """Why SkyPilot cannot run this server's fine-tunes (None: it can), for the status route."""
    if executors.executor_name(state.settings) != "skypilot":
        return "this control plane runs fine-tunes locally (start it with --executor=skypilot)"
    return executors.skypilot_problem(state)
