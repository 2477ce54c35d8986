"""Jobs as SkyPilot managed jobs: the `skypilot` executor (`--executor=skypilot`).

`jobs.py` keeps the job's row, queue and directory as for the local executor, and hands these
steps to this module for a job whose `spec.json` says `"executor": "skypilot"`:

- launch: the job rendered as a SkyPilot task (`skypilot_task.render_job_task`; the rendered
  dict, with no secret value, is kept in `skypilot-task.json`) launched with `sky.jobs.launch`
  in a thread (the SDK's calls take seconds); secrets are the task's SkyPilot `secrets`, set on
  the `sky.Task` object in memory only: the job's named secrets, `HF_TOKEN`, `GIT_TOKEN` for a
  git URL's credentials, and each script line that a masked value changed (`eval
  "$DUMONT_JOB_LINE_<n>"`, as the local runner does). An uploaded workdir (`--workdir`) is
  unpacked beside the job and is the task's `workdir` (it replaces a git source's). The
  managed job's id is kept in `skypilot.json` beside the job.
- status: each reconciler pass reads `sky.jobs.queue` for the unfinished jobs and maps
  SkyPilot's `ManagedJobStatus` through `JOB_STATUS`; a finished one ends the job, its log
  fetched once more, once its outputs are copied back (`sky_outputs`: each output path is a
  sub-folder of the job's bucket location, mounted on the machine). `timeout_minutes` is
  enforced here (on the server's clock): past it the managed job is cancelled and the job
  ends `timeout`.
- logs: `sky.jobs.tail_logs(follow=False)` into the job's `job.log` (secret values masked)
  when the logs are read while it runs, and when it ends;
- cancel: `sky.jobs.cancel(job_ids=[id])`, then the outputs written so far are copied back.

The SDK calls themselves are `sky_managed`'s, shared with fine-tunes (`sky_finetunes`). A
launch in flight when the control plane stops is not resumed: the job fails saying so (the
managed job may exist: `sky jobs queue` shows it).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from sqlite3 import Row
from types import ModuleType
from typing import Any

from dumont_plan.server.context import AppState
from dumont_plan.server.provider import runner, sky_managed, sky_outputs, workdirs
from dumont_plan.server.provider.job_secrets import Carried, mask_text
from dumont_plan.server.provider.sandbox import read_json, write_json_atomic
from dumont_plan.skypilot_task import render_job_task

logger = logging.getLogger("dumont_plan.server.sky_jobs")
STATE_FILE = sky_managed.STATE_FILE
TASK_FILE = sky_managed.TASK_FILE
SHIPPED_DIR = "skypilot-workdir"

# SkyPilot's ManagedJobStatus -> the contract's job status (§5.4).
JOB_STATUS: dict[str, str] = {
    "PENDING": "provisioning",
    "SUBMITTED": "provisioning",
    "STARTING": "starting",
    "RUNNING": "running",
    "RECOVERING": "provisioning",  # a spot machine was preempted: SkyPilot provisions anew
    "CANCELLING": "running",
    "WINDING_DOWN": "completing",
    "SUCCEEDED": "completed",
    "CANCELLED": "cancelled",
    "FAILED": "failed",
    "FAILED_SETUP": "failed",
    "FAILED_PRECHECKS": "failed",
    "FAILED_NO_RESOURCE": "failed",
    "FAILED_CONTROLLER": "failed",
}
# The error message of each failed status (SkyPilot's failure_reason is appended).
FAILURES: dict[str, str] = {
    "FAILED": "the job's command failed",
    "FAILED_SETUP": "the job's setup (source, pip_packages, setup_script) failed",
    "FAILED_PRECHECKS": "SkyPilot refused the task (its prechecks failed)",
    "FAILED_NO_RESOURCE": "Failed to provision GPU: SkyPilot found no machine for it",
    "FAILED_CONTROLLER": "SkyPilot's jobs controller failed",
}
FINISHED = ("completed", "failed", "cancelled", "timeout")
INTERRUPTED = (
    "the SkyPilot launch was interrupted by a control plane restart (the managed job may"
    " exist: see `sky jobs queue`)"
)

_launches = sky_managed.Launches("jobs")


def handles(spec: dict[str, Any]) -> bool:
    return spec.get("executor") == "skypilot"


_field = sky_managed.field
sdk = sky_managed.sdk


# -- rendering ----------------------------------------------------------------------------------


def render(
    job_id: str, spec: dict[str, Any], env: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The task (no secret value in it) and the SkyPilot secrets of a job whose stored
    (masked) configuration is `spec`; `env` is what the keeper holds for it."""
    carried = Carried.from_env(env) or Carried()
    real = {**spec, **carried.fields}
    for name in ("command", "setup_script"):
        if getattr(carried, name) is not None:
            real[name] = getattr(carried, name)
    envs = {"DUMONT_JOB_ID": job_id}
    task = render_job_task(spec, envs=envs)
    wanted = render_job_task(real, envs=envs)
    for key in ("setup", "run"):
        stored, real_text = task.get(key, ""), wanted.get(key, "")
        if stored == real_text:
            continue
        masked_lines, real_lines = stored.split("\n"), real_text.split("\n")
        if len(masked_lines) != len(real_lines):  # a value with a newline: the whole text
            masked_lines, real_lines = [stored], [real_text]
        hidden = Carried()
        lines = hidden.hide_lines(masked_lines, real_lines)
        prefix = f"DUMONT_{key.upper()}_"
        for number, line in enumerate(lines):
            if line.startswith('eval "$DUMONT_JOB_LINE_'):
                name = f"{prefix}LINE_{number}"
                carried.env[name] = hidden.lines[f"DUMONT_JOB_LINE_{number}"]
                lines[number] = f'eval "${name}"'
        task[key] = "\n".join(lines)
    secrets = dict(carried.env)
    if env.get("HF_TOKEN"):
        secrets["HF_TOKEN"] = env["HF_TOKEN"]
    if carried.git_password:
        secrets["GIT_TOKEN"] = carried.git_password
    task["secrets"] = dict.fromkeys(sorted({*task.get("secrets", {}), *secrets}))
    return task, secrets


def secret_values(env: dict[str, str]) -> list[str]:
    carried = Carried.from_env(env)
    values = carried.values() if carried is not None else []
    return [*values, *([env["HF_TOKEN"]] if env.get("HF_TOKEN") else [])]


# -- launch ---------------------------------------------------------------------------------------


def launch(
    state: AppState, job_id: str, directory: Path, attempt: int, env: dict[str, str]
) -> None:
    """Start launching the job on SkyPilot (in a thread); `env`: its secrets (memory only)."""
    from dumont_plan.server.provider import jobs

    write_json_atomic(directory / STATE_FILE, {"attempt": attempt})  # a fresh state

    def failed(message: str) -> None:
        jobs.finish(state, job_id, "failed", time.time(), None, message)

    def cancelled() -> bool:
        row = state.store.query_one("SELECT status FROM jobs WHERE id = ?", (job_id,))
        return row is not None and row["status"] == "cancelled"

    _launches.start(
        state,
        sky_managed.Launch(
            job_id,
            directory,
            lambda: _prepare(state, job_id, directory, env),
            failed,
            cancelled,
            lambda: sky_managed.copy_outputs(job_id, directory, None),
        ),
    )


def _prepare(
    state: AppState, job_id: str, directory: Path, env: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    spec = read_json(directory / runner.SPEC_FILE) or {}
    task_config, secrets = render(job_id, spec, env)
    shipped = ship_workdir(directory)
    if shipped is not None:
        task_config["workdir"] = shipped
    outputs = sky_outputs.location(state.settings, f"job-{job_id}")
    if outputs is not None:
        paths = [str(p) for p in spec.get("output_paths") or []]
        task_config.setdefault("file_mounts", {}).update(sky_outputs.mounts(outputs, paths))
    sky_managed.update_state(directory, outputs=outputs)
    return task_config, secrets


def ship_workdir(directory: Path) -> str | None:
    """An uploaded workdir (`workdirs`), unpacked beside the job (checked member by member):
    the task's `workdir`, which SkyPilot syncs to the machine and runs setup and run in."""
    archive = directory / workdirs.WORKDIR_FILE
    if not archive.is_file():
        return None
    target = directory / SHIPPED_DIR
    if not target.is_dir():
        target.mkdir()
        files = workdirs.safe_extract(archive, target)
        sky_managed.note(directory, f"workdir unpacked for SkyPilot to sync ({files} files)")
    return str(target)


# -- status, timeout, logs, cancel ------------------------------------------------------------


def reconcile(state: AppState, rows: list[Row], directory_of: Any) -> None:
    """One pass over the unfinished SkyPilot jobs (`directory_of(job_id)`: the job's folder)."""
    from dumont_plan.server.provider import jobs

    ids = _launches.split(
        rows,
        directory_of,
        lambda row: jobs.finish(state, row["id"], "failed", time.time(), None, INTERRUPTED),
    )
    if not ids:
        return
    try:
        sky = sdk(state)
        records = sky_managed.queue(sky, list(ids))
    except Exception as exc:
        logger.warning("SkyPilot queue failed: %s", exc)
        return
    for record in records:
        found = ids.get(int(_field(record, "job_id")))
        if found is not None:
            _apply(state, sky, found, record, directory_of(found["id"]))


def _apply(state: AppState, sky: ModuleType, row: Row, record: Any, directory: Path) -> None:
    from dumont_plan.server.provider import jobs

    if sky_outputs.copying(row["id"]):
        return
    sky_status = str(_field(record, "status"))
    status = JOB_STATUS.get(sky_status, row["status"])
    current = sky_managed.read_state(directory)
    sky_job_id = int(current["sky_job_id"])
    now = state.clock.now()
    started = current.get("started")
    if status in FINISHED:
        fetch_log(state, sky, row["id"], sky_job_id, directory)
        error = None
        if status == "failed":
            reason = _field(record, "failure_reason")
            error = FAILURES.get(sky_status, sky_status) + (f": {reason}" if reason else "")
        _copy_outputs(state, row["id"], directory, (status, error, started))
        return
    if status == "running" and started is None:
        started = now
        sky_managed.update_state(directory, started=started)
    if started is not None and now > float(started) + float(row["timeout_seconds"]):
        sky_managed.cancel(sky, sky_job_id)
        fetch_log(state, sky, row["id"], sky_job_id, directory)
        message = f"Job exceeded its timeout of {row['timeout_minutes']} minutes"
        _copy_outputs(state, row["id"], directory, ("timeout", message, started))
        return
    if (status, started) != (row["status"], row["started_ts"]):
        with state.store.tx() as conn:
            conn.execute(
                "UPDATE jobs SET status = ?, started_ts = ?"
                f" WHERE id = ? AND {jobs.NOT_FINISHED_SQL}",
                (status, started, row["id"]),
            )


def _copy_outputs(
    state: AppState, job_id: str, directory: Path, ending: tuple[str, str | None, float | None]
) -> None:
    """Copy the managed job's outputs back, then end the job: (status, error, started)."""
    from dumont_plan.server.provider import jobs

    status, error, started = ending
    sky_managed.copy_outputs(
        job_id,
        directory,
        lambda: jobs.finish(state, job_id, status, time.time(), None, error, started),
    )


def fetch_log(
    state: AppState, sky: ModuleType, job_id: str, sky_job_id: int, directory: Path
) -> None:
    """The managed job's log so far into `job.log` (secret values masked)."""
    from dumont_plan.server.provider import jobs

    try:
        text = sky_managed.tail(sky, sky_job_id)
    except Exception as exc:
        logger.warning("SkyPilot logs of %s failed: %s", job_id, exc)
        return
    masked = mask_text(text, secret_values(jobs.supervisor(state).secrets.env(job_id)))
    sky_managed.replace_log(directory, masked)


def refresh_log(state: AppState, job_id: str, directory: Path) -> None:
    """Before a read of a running job's logs: fetch what SkyPilot has."""
    found = sky_managed.launched(state, directory, "jobs")
    if found is not None:
        sky, sky_job_id = found
        fetch_log(state, sky, job_id, sky_job_id, directory)


def cancel(state: AppState, job_id: str, directory: Path) -> None:
    """Cancel the managed job of a job just marked cancelled (a launch in flight cancels it
    when it returns), then copy back what it wrote. Its log keeps what the last read fetched:
    the secrets that mask a fetched log are forgotten once the job is finished."""
    found = sky_managed.launched(state, directory, "jobs")
    if found is not None:
        sky_managed.cancel(*found)
        sky_managed.copy_outputs(job_id, directory, None)
