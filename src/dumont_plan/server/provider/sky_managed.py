"""SkyPilot managed jobs: the SDK plumbing that jobs (`sky_jobs`) and fine-tunes
(`sky_finetunes`) share on the `skypilot` executor.

Every call goes through SkyPilot's Python SDK (the real `sky` package, or the test fake that
`DUMONT_SERVER_SKY_MODULE` names): a call returns a request id that `sky.get` resolves.

- `sdk`: the SDK once SkyPilot's credential check has ended, or RuntimeError saying why not;
- `launch_task`: a rendered task dict (no secret value in it) and its secrets (memory only,
  `Task.update_secrets`) launched with `sky.jobs.launch`; the managed job's id;
- `queue`: `sky.jobs.queue` for some managed job ids (a record: dict or pydantic model, read
  with `field`);
- `tail`: the managed job's log so far (`sky.jobs.tail_logs(follow=False)`);
- `cancel`: `sky.jobs.cancel(job_ids=[id])`, best effort (it may have ended meanwhile);
- `STATE_FILE` (`skypilot.json` beside the job or fine-tune: the managed job's id and what the
  launch decided) and `note` (a `[dumont]` line in its log);
- `Launches`: a launch in a thread (render, launch, record the id, cancel it if the work was
  cancelled meanwhile) and which launches are in flight;
- `copy_outputs`: the outputs copied back once (`sky_outputs`), then the work finished.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from sqlite3 import Row
from types import ModuleType
from typing import Any

from dumont_plan.server.context import AppState
from dumont_plan.server.provider import executors, joblog, runner, sky_outputs
from dumont_plan.server.provider.sandbox import Sandbox, read_json, write_json_atomic

logger = logging.getLogger("dumont_plan.server.sky_managed")
STATE_FILE = "skypilot.json"
TASK_FILE = "skypilot-task.json"
CHECK_WAIT_SECONDS = 60.0


def sdk(state: AppState, what: str = "jobs") -> ModuleType:
    """SkyPilot's SDK once its check has ended; raises RuntimeError saying why it cannot run."""
    check = executors.sky_check(state)
    check.clouds_checked.wait(CHECK_WAIT_SECONDS)
    if check.problem is not None or check.module is None:
        raise RuntimeError(f"SkyPilot cannot run {what} here: {check.problem or 'not loaded'}")
    return check.module


def field(record: Any, name: str) -> Any:
    """A field of a queue record: a dict (older SDKs, the fake) or a pydantic model."""
    value = record.get(name) if isinstance(record, dict) else getattr(record, name, None)
    return getattr(value, "value", value)  # ManagedJobStatus is an enum


def launch_task(sky: ModuleType, config: dict[str, Any], secrets: dict[str, str]) -> int:
    """Launch `config` as a managed job named after it; its managed job id."""
    task = sky.Task.from_yaml_config(config)
    task.update_secrets(secrets)
    ids, _handle = sky.get(sky.jobs.launch(task, name=config["name"]))
    return int(ids[0] if isinstance(ids, list | tuple) else ids)


def queue(sky: ModuleType, sky_job_ids: list[int]) -> list[Any]:
    records: list[Any] = sky.get(sky.jobs.queue(refresh=False, job_ids=sorted(sky_job_ids)))
    return records


def tail(sky: ModuleType, sky_job_id: int) -> str:
    out = io.StringIO()
    sky.jobs.tail_logs(job_id=sky_job_id, follow=False, output_stream=out)
    return out.getvalue()


def cancel(sky: ModuleType, sky_job_id: int) -> None:
    try:
        sky.get(sky.jobs.cancel(job_ids=[sky_job_id]))
    except Exception as exc:  # it may have ended meanwhile; the log says what happened
        logger.warning("SkyPilot cancel of %s failed: %s", sky_job_id, exc)


def read_state(directory: Path) -> dict[str, Any]:
    return read_json(directory / STATE_FILE) or {}


def update_state(directory: Path, **fields: Any) -> dict[str, Any]:
    current = {**read_state(directory), **fields}
    write_json_atomic(directory / STATE_FILE, current)
    return current


def sky_job_id(directory: Path) -> int | None:
    found = read_state(directory).get("sky_job_id")
    return None if found is None else int(found)


def launched(state: AppState, directory: Path, what: str) -> tuple[ModuleType, int] | None:
    """The SDK and the managed job of the run in `directory`; None when it has not been
    launched or SkyPilot cannot run `what` here (nothing to cancel or read then)."""
    found = sky_job_id(directory)
    if found is None:
        return None
    try:
        return sdk(state, what), found
    except RuntimeError:
        return None


def note(directory: Path, text: str) -> None:
    """A `[dumont]` line in the log beside the job (kept when SkyPilot's log is fetched)."""
    writer = joblog.LogWriter(directory / runner.LOG_FILE, [])
    try:
        writer.note(text)
    finally:
        writer.close()


def replace_log(directory: Path, text: str) -> None:
    """The fetched managed-job log as the log beside the job, after its `[dumont]` notes."""
    path = directory / runner.LOG_FILE
    head = path.read_text(errors="replace").split("\n") if path.exists() else []
    notes = [line for line in head if line.startswith("[dumont]")]
    path.write_text("\n".join(notes) + ("\n" if notes else "") + text, encoding="utf-8")


# -- launching, in a thread ---------------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    """One launch: `prepare()` renders the task and its secrets; a failure calls
    `failed(message)`; once launched, if `cancelled()` says the work was cancelled meanwhile,
    the managed job is cancelled, then `after_cancel()`."""

    key: str  # the job's or fine-tune's id
    directory: Path
    prepare: Callable[[], tuple[dict[str, Any], dict[str, str]]]
    failed: Callable[[str], object]
    cancelled: Callable[[], bool]
    after_cancel: Callable[[], object]


class Launches:
    """The launches in flight in this process (by job or fine-tune id): a reconciler pass
    tells one in flight from one a restart of the control plane interrupted."""

    def __init__(self, what: str) -> None:
        self.what = what  # "jobs" or "fine-tunes", for messages
        self._ids: set[str] = set()
        self._lock = threading.Lock()

    def in_flight(self, key: str) -> bool:
        with self._lock:
            return key in self._ids

    def start(self, state: AppState, launch: Launch) -> None:
        """Launch in a thread; the managed job's id is recorded in `STATE_FILE`."""
        update_state(launch.directory, sky_job_id=None)
        with self._lock:
            self._ids.add(launch.key)
        name = f"sky-launch-{launch.key}"
        threading.Thread(target=self._run, args=(state, launch), name=name).start()

    def _run(self, state: AppState, launch: Launch) -> None:
        try:
            config, secrets = launch.prepare()
            write_json_atomic(launch.directory / TASK_FILE, config)
            sky = sdk(state, self.what)
            launched = launch_task(sky, config, secrets)
        except Exception as exc:
            logger.warning("SkyPilot launch of %s failed: %s", launch.key, exc)
            launch.failed(f"SkyPilot launch failed: {exc}")
            return
        finally:
            with self._lock:
                self._ids.discard(launch.key)
        # The note first: once the id is recorded, a log read rewrites the log (`replace_log`).
        note(launch.directory, f"launched as SkyPilot managed job {launched}")
        update_state(launch.directory, sky_job_id=launched)
        if launch.cancelled():  # cancelled while launching
            cancel(sky, launched)
            launch.after_cancel()

    def split(
        self,
        rows: list[Row],
        directory_of: Callable[[str], Path],
        interrupted: Callable[[Row], object],
    ) -> dict[int, Row]:
        """The rows whose managed job is launched, by its id; `interrupted(row)` for each one
        whose launch is neither recorded nor in flight."""
        launched: dict[int, Row] = {}
        for row in rows:
            found = sky_job_id(directory_of(row["id"]))
            if found is not None:
                launched[found] = row
            elif not self.in_flight(row["id"]):
                interrupted(row)
        return launched


def copy_outputs(
    key: str,
    directory: Path,
    ending: Callable[[], object] | None,
    copied: Callable[[], object] | None = None,
) -> None:
    """Copy the managed job's outputs back (`sky_outputs`, once), note what happened, call
    `copied()`, then `ending()` (it finishes the work; None: it has finished already)."""

    def then(said: str) -> None:
        if not read_state(directory).get("copied"):
            note(directory, said)
            update_state(directory, copied=True)
            if copied is not None:
                copied()
        if ending is not None:
            ending()

    current = read_state(directory)
    if current.get("copied"):
        then("")
        return
    sky_outputs.copy_back(key, current.get("outputs"), Sandbox(directory).outputs, then)
