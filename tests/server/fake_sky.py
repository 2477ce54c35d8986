"""A fake of SkyPilot's Python SDK, test-only: the boundary the `skypilot` executor calls.

No cloud is reachable from the tests, so the control plane under test loads this file instead
of `sky` (`DUMONT_SERVER_SKY_MODULE=<this file>`). It mirrors the real 0.14 SDK's names and
parameters (tests/test_sky_sdk_surface.py checks them against the real package): calls return
a request id that `get` resolves, as the real client SDK does. Its state lives in the folder
named by `FAKE_SKY_DIR`, so the test process scripts it while the server runs:

- `clouds.json`: what `check.check` returns (default: no enabled cloud);
- `launched/<id>.json`: each launched task (its config, name, secret names, whether a value was
  given for each);
- `status/<id>`: the managed job's status the test sets (default `PENDING`);
- `logs/<id>`: its log; `cancelled/<id>`: written by `jobs.cancel`;
- `writes/<id>/<mount point>/...`: files the managed job writes on its machine under a
  storage mount (e.g. `writes/1/workspace/outputs/lora_model/adapter.bin`): the fake "cloud"
  puts each into the mount's storage location (a `file://` source) when the job is queried,
  as SkyPilot's MOUNT_CACHED mode uploads what the machine writes.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

_lock = threading.Lock()
_requests: dict[str, Any] = {}
_counter = itertools.count(1)


def _root() -> Path:
    return Path(os.environ["FAKE_SKY_DIR"])


def _request(result: Any) -> str:
    with _lock:
        request_id = f"fake-request-{next(_counter)}"
        _requests[request_id] = result
    return request_id


def get(request_id: str) -> Any:
    with _lock:
        return _requests.pop(request_id)


class Task:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.name = config.get("name")
        self.secrets: dict[str, str] = {}

    @classmethod
    def from_yaml_config(
        cls, config: dict[str, Any], env_overrides: Any = None, secrets_overrides: Any = None
    ) -> Task:
        return cls(copy.deepcopy(config))

    def update_secrets(self, secrets: dict[str, str] | None) -> Task:
        self.secrets.update(secrets or {})
        return self


def _check(
    quiet: bool = False, verbose: bool = False, clouds: Any = None, workspace: Any = None
) -> dict[str, dict[str, list[str]]]:
    path = _root() / "clouds.json"
    found: dict[str, dict[str, list[str]]] = (
        json.loads(path.read_text()) if path.exists() else {"default": {}}
    )
    return found


check = SimpleNamespace(check=_check)


def _launch(
    task: Task,
    name: str | None = None,
    pool: str | None = None,
    num_jobs: int | None = None,
    job_group: Any = None,
    _need_confirmation: bool = False,
) -> str:
    folder = _root() / "launched"
    folder.mkdir(parents=True, exist_ok=True)
    with _lock:
        job_id = len(list(folder.iterdir())) + 1
        record = {
            "name": name,
            "config": task.config,
            "secrets": {key: bool(value) for key, value in task.secrets.items()},
        }
        partial = folder / f".{job_id}.tmp"  # the test polls for the file: write it whole
        partial.write_text(json.dumps(record))
        partial.rename(folder / f"{job_id}.json")
    return _request(([job_id], None))


def _status(job_id: int) -> str:
    path = _root() / "status" / str(job_id)
    return path.read_text().strip() if path.exists() else "PENDING"


def _upload_writes(job_id: int, config: dict[str, Any]) -> None:
    """The machine's writes under storage mounts, into the mounts' `file://` locations."""
    written = _root() / "writes" / str(job_id)
    for mount, spec in (config.get("file_mounts") or {}).items():
        source = spec.get("source", "") if isinstance(spec, dict) else ""
        folder = written / mount.lstrip("/")
        if not source.startswith("file://") or not folder.is_dir():
            continue
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            target = Path(source[len("file://") :]) / file.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)


def _queue(
    refresh: bool,
    skip_finished: bool = False,
    all_users: bool = False,
    job_ids: list[int] | None = None,
    version: int = 1,
) -> str:
    folder = _root() / "launched"
    ids = sorted(int(p.stem) for p in folder.glob("*.json")) if folder.exists() else []
    for i in ids:
        if job_ids is None or i in job_ids:
            _upload_writes(i, json.loads((folder / f"{i}.json").read_text())["config"])
    records = [
        {"job_id": i, "status": _status(i), "failure_reason": None}
        for i in ids
        if job_ids is None or i in job_ids
    ]
    return _request(records)


def _cancel(
    name: str | None = None,
    job_ids: list[int] | None = None,
    all: bool = False,
    all_users: bool = False,
    pool: str | None = None,
    graceful: bool = False,
    graceful_timeout: int | None = None,
    task: Any = None,
) -> str:
    for job_id in job_ids or []:
        launched = _root() / "launched" / f"{job_id}.json"
        if launched.exists():  # the machine's cache is flushed before it goes
            _upload_writes(job_id, json.loads(launched.read_text())["config"])
        for sub in ("cancelled", "status"):
            (_root() / sub).mkdir(parents=True, exist_ok=True)
        (_root() / "cancelled" / str(job_id)).write_text("1")
        (_root() / "status" / str(job_id)).write_text("CANCELLED")
    return _request(None)


def _tail_logs(
    name: str | None = None,
    job_id: int | None = None,
    follow: bool = True,
    controller: bool = False,
    refresh: bool = False,
    tail: int | None = None,
    tail_offset: int | None = None,
    output_stream: Any = None,
    task: Any = None,
    *,
    preload_content: bool = True,
) -> int:
    path = _root() / "logs" / str(job_id)
    if output_stream is not None and path.exists():
        output_stream.write(path.read_text())
    return 0


jobs = SimpleNamespace(launch=_launch, queue=_queue, cancel=_cancel, tail_logs=_tail_logs)
