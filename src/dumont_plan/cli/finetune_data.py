"""Files in and out of fine-tunes for `dumont finetune`: a dataset upload with a progress
bar, a refused upload as one line, a rendered task printed, the outputs' archive unpacked."""

from __future__ import annotations

import io
import sys
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dumont_plan.cli.output import emit_json, err_console
from dumont_plan.client import DumontClient
from dumont_plan.client.base import error_message
from dumont_plan.errors import ApiError, DumontError
from dumont_plan.loader.dump import dump_yaml


def upload_file(
    client: DumontClient,
    path: Path,
    dataset_format: str | None,
    *,
    where: str = "finetune upload",
    announce: bool = True,
) -> str:
    """Upload the dataset file `path` (a progress bar on a terminal); the server path it
    answered (for `dataset_source=upload`). `announce`: say on stderr what the server found
    (records, format) and where it keeps the file."""
    if err_console.is_terminal:
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        columns = (
            "{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
        )
        with Progress(*columns, console=err_console, transient=True) as bar:
            task = bar.add_task(f"Uploading {path.name}", total=path.stat().st_size)
            with about_dataset(path, where):
                answer = client.finetune.upload(
                    path,
                    dataset_format=dataset_format,
                    progress=lambda sent, total: bar.update(task, completed=sent, total=total),
                )
    else:
        with about_dataset(path, where):
            answer = client.finetune.upload(path, dataset_format=dataset_format)
    if not announce:
        return answer.dataset_path
    detail = ", ".join(
        part
        for part in (
            f"{answer.records} records" if answer.records is not None else "",
            answer.format or "",
        )
        if part
    )
    err_console.print(
        f"Uploaded {path.name}{f' ({detail})' if detail else ''}: {answer.dataset_path}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return answer.dataset_path


@contextmanager
def about_dataset(path: Path, where: str) -> Iterator[None]:
    """A refused upload (a bad record, a wrong suffix, too big) as one line naming the file."""
    try:
        yield
    except ApiError as exc:
        if exc.status_code not in (400, 413, 415, 422):
            raise
        raise DumontError(
            f"{where}: {path}: {refusal_text(exc)}", "fix the file, then upload it again"
        ) from exc


def refusal_text(exc: ApiError) -> str:
    """The server's words for a refused upload: a 422's first detail (`line 3: record has no
    "output"`), else its error message."""
    body = exc.body if isinstance(exc.body, dict) else {}
    details = [d for d in body.get("details") or [] if isinstance(d, dict) and d.get("msg")]
    if details:
        return str(details[0]["msg"]).removeprefix("Value error, ")
    return error_message(exc.body, exc.message)


def print_task(task: dict[str, Any], *, as_json: bool) -> None:
    """A SkyPilot task as YAML (or JSON) on stdout."""
    if as_json:
        emit_json(task)
        return
    sys.stdout.write(dump_yaml(task))


def unpack_outputs(data: bytes, target: Path, job_id: str) -> list[str]:
    """Unpack the outputs' gzipped tar into `target` (no path leaves it); the files' names."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            members = archive.getmembers()
            # The server puts everything under one folder (`finetune-<id>/`): drop it, so
            # `-o DIR` holds `outputs/lora_model/...` directly.
            tops = {m.name.split("/", 1)[0] for m in members}
            if len(tops) == 1 and all("/" in m.name or m.isdir() for m in members):
                members = [
                    m.replace(name=m.name.split("/", 1)[1]) for m in members if "/" in m.name
                ]
            names = [m.name for m in members if m.isfile()]
            target.mkdir(parents=True, exist_ok=True)
            archive.extractall(target, members=members, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise DumontError(
            f"finetune download: cannot unpack the outputs of {job_id} into {target}: {exc}",
            "check the directory, or see what there is with `dumont finetune status`",
        ) from exc
    return names
