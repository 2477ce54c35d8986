"""Outputs of SkyPilot managed jobs, copied back to the control plane.

The operator names a bucket prefix (`DUMONT_SERVER_SKY_OUTPUTS`: `s3://bucket/prefix`,
`gs://bucket/prefix`, or `file:///dir` for a folder the machines and the control plane share).
Each job or fine-tune gets its own location under it, `<prefix>/<job-id|finetune-id>/`, and
its task mounts one sub-folder of it per output path (`/workspace/output` ->
`<location>/output`, SkyPilot's `MOUNT_CACHED` mode: written locally, uploaded in the
background, appends allowed). When the managed job ends (completed, failed, cancelled or
timed out), the control plane copies the location into the job's `outputs/` folder — the
same layout a local job keeps — so the outputs routes serve them; the job is marked finished
once the copy ended. The copy runs in a thread (a model can be large): `aws s3 sync`,
`gsutil -m rsync -r` (the clouds' own tools, which SkyPilot's set-up installs), or a plain
copy for `file://`; only regular files come back (no symlink is followed), into a staging
folder first. Without the setting nothing is mounted and nothing comes back (the job's log
says so).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from dumont_plan.server.provider.sandbox import regular_files
from dumont_plan.server.settings import ServerSettings

logger = logging.getLogger("dumont_plan.server.sky_outputs")
SETTING = "DUMONT_SERVER_SKY_OUTPUTS"
MODE = "MOUNT_CACHED"
COMMANDS = {
    "s3": ["aws", "s3", "sync", "--only-show-errors"],
    "gs": ["gsutil", "-m", "-q", "rsync", "-r"],
}
SCHEMES = (*COMMANDS, "file")
COPY_TIMEOUT_SECONDS = 6 * 3600
NOT_SET = f"outputs are not copied back ({SETTING} is not set)"

_copying: set[str] = set()
_lock = threading.Lock()


def setting_problem(settings: ServerSettings) -> str | None:
    """What is wrong with the outputs setting (None: fine, or not set)."""
    base = settings.sky_outputs
    if not base:
        return None
    parsed = urlparse(base)
    if parsed.scheme not in SCHEMES or not (parsed.netloc or parsed.path.strip("/")):
        return f"{SETTING}={base!r}: use s3://bucket/prefix, gs://bucket/prefix or file:///dir"
    if parsed.scheme == "file" and not Path(parsed.path).is_absolute():
        return f"{SETTING}={base!r}: a file:// location needs an absolute path"
    return None


def location(settings: ServerSettings, name: str) -> str | None:
    """The output location of the job or fine-tune `name` (None: outputs are not kept)."""
    if not settings.sky_outputs or setting_problem(settings) is not None:
        return None
    return settings.sky_outputs.rstrip("/") + "/" + name


def mounts(url: str, output_paths: list[str]) -> dict[str, dict[str, Any]]:
    """The task's `file_mounts` entries: each output folder under /workspace, a sub-folder of
    the location (`/workspace/output` -> `<url>/output`)."""
    found: dict[str, dict[str, Any]] = {}
    for raw in output_paths:
        path = PurePosixPath(raw)
        try:
            relative = path.relative_to("/workspace")
        except ValueError:
            continue
        if relative.parts and ".." not in relative.parts:
            found[str(path)] = {"source": f"{url}/{relative.as_posix()}", "mode": MODE}
    return found


def _fetch(url: str, staging: Path) -> None:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        source = Path(parsed.path)
        for file in regular_files(source) if source.is_dir() else []:
            target = staging / file.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)
        return
    command = [*COMMANDS[parsed.scheme], url, str(staging)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=COPY_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"{command[0]} failed: {exc}") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1][:300]
        raise RuntimeError(f"{' '.join(command[:3])} exited with {done.returncode}: {last}")


def download(url: str, outputs: Path) -> int:
    """Copy the location's files into `outputs` (regular files only); how many came back."""
    outputs.mkdir(parents=True, exist_ok=True)
    staging = outputs.parent / f".copy-back-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        _fetch(url, staging)
        files = regular_files(staging)
        for file in files:
            target = outputs / file.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink():
                target.unlink()
            shutil.move(file, target)
        return len(files)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def copying(key: str) -> bool:
    with _lock:
        return key in _copying


def copy_back(key: str, url: str | None, outputs: Path, then: Callable[[str], None]) -> None:
    """Copy `url` into `outputs` in a thread (unless a copy of `key` is in flight), then call
    `then(what happened)` (a sentence for the job's log). No `url`: `then` at once."""
    if url is None:
        then(NOT_SET)
        return
    with _lock:
        if key in _copying:
            return
        _copying.add(key)

    def run() -> None:
        try:
            count = download(url, outputs)
            said = f"outputs copied back from {url} ({count} files)"
        except Exception as exc:
            logger.warning("copying the outputs of %s back failed: %s", key, exc)
            said = f"outputs could not be copied back from {url}: {exc}"
        try:
            then(said)
        finally:
            with _lock:
                _copying.discard(key)

    threading.Thread(target=run, name=f"sky-outputs-{key}", daemon=True).start()
