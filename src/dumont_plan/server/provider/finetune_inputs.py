"""What a fine-tune create names, made concrete: the dataset file it trains on and the host
paths its trainer reads (read-only).

- `upload` / `existing`: a dataset the caller uploaded (another user's path is refused exactly
  like a missing one);
- `huggingface`: a dataset in the server's Hugging Face cache (the server trains offline): its
  newest snapshot's `.jsonl` / `.json` files, each record checked, joined into one file;
- `url`: an http(s) file fetched now by the control plane (bounded in time and size) and
  checked; without internet access that is a clear refusal. A `user:password@` in the URL is
  sent as Basic auth and cut out of the `dataset_path` that is stored and shown.

Every failure is a `DatasetError` whose `loc` names the request field.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dumont_plan.errors import DatasetError
from dumont_plan.server.context import AppState
from dumont_plan.server.provider import datasets, finetune_catalog, uploads
from dumont_plan.server.provider.job_secrets import strip_credentials

URL_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class Resolved:
    dataset: Path  # the file to train on (copied into the fine-tune's inputs)
    format: str
    temporary: bool  # remove `dataset` once copied
    shown_path: str | None = None  # the dataset_path to store, when not the one given


def _path_error(message: str) -> DatasetError:
    return DatasetError(message, ("body", "dataset_path"))


def _checked(path: Path, suffix: str, fmt: str | None, what: str) -> str:
    try:
        return datasets.check_file(path, suffix, fmt).format
    except DatasetError as exc:
        path.unlink(missing_ok=True)
        raise _path_error(f"{what}: {exc.message}") from None


def _from_cache(state: AppState, dataset_id: str, fmt: str | None, folder: Path) -> Resolved:
    snapshot = finetune_catalog.dataset_snapshot(state.settings, dataset_id)
    if snapshot is None:
        raise _path_error(
            f"Hugging Face dataset {dataset_id!r} is not in this server's cache, and the server "
            "trains offline; upload the file (POST /api/v1/finetune/jobs/upload-dataset), or "
            "download it on the server first: huggingface-cli download --repo-type dataset "
            f"{dataset_id}"
        )
    files = sorted(p for p in snapshot.rglob("*") if p.suffix in datasets.SUFFIXES)
    if not files:
        raise _path_error(
            f"Hugging Face dataset {dataset_id!r} has no .json or .jsonl file in the cache; "
            "upload the data as .jsonl instead"
        )
    target = folder / f".hf-{uuid.uuid4().hex}.jsonl"
    found = fmt
    with target.open("w", encoding="utf-8") as out:
        for file in files:
            try:
                for line, record in datasets.iter_records(file.resolve(), file.suffix):
                    found = found or datasets.detect_format(record)
                    problem = record_problem(record, found)
                    if problem is not None:
                        raise DatasetError(
                            f"{file.relative_to(snapshot)} line {line}: record {problem}",
                            ("line", line),
                        )
                    out.write(json.dumps(record) + "\n")
            except DatasetError as exc:
                target.unlink(missing_ok=True)
                raise _path_error(f"Hugging Face dataset {dataset_id}: {exc.message}") from None
    return Resolved(target, _checked(target, ".jsonl", found, dataset_id), temporary=True)


def record_problem(record: Any, fmt: str | None) -> str | None:
    if fmt is None:
        return "matches no dataset format; " + "; ".join(datasets.SHAPES.values())
    problem = datasets.record_problem(record, fmt)
    return None if problem is None else f"{problem[1]}; {datasets.SHAPES[fmt]}"


def _from_url(state: AppState, url: str, fmt: str | None, folder: Path) -> Resolved:
    if not url.startswith(("http://", "https://")):
        raise _path_error("dataset_path is not an http(s) URL; give the URL of a .json/.jsonl file")
    url, username, password = strip_credentials(url)
    request = urllib.request.Request(url)
    if username is not None or password is not None:
        pair = f"{username or ''}:{password or ''}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(pair).decode())
    suffix = ".json" if url.split("?", 1)[0].endswith(".json") else ".jsonl"
    target = folder / f".url-{uuid.uuid4().hex}{suffix}"
    limit = state.settings.dataset_max_bytes
    try:
        with urllib.request.urlopen(request, timeout=URL_TIMEOUT_SECONDS) as answer:
            size = 0
            with target.open("wb") as out:
                while chunk := answer.read(64 * 1024):
                    size += len(chunk)
                    if size > limit:
                        raise _path_error(
                            f"the dataset at {url} is larger than this server's limit of "
                            f"{limit} bytes"
                        )
                    out.write(chunk)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        target.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        if isinstance(exc, urllib.error.HTTPError):
            reason = f"HTTP {exc.code} {exc.reason}"
        raise _path_error(
            f"could not fetch the dataset at {url}: {reason}; upload the file instead "
            "(POST /api/v1/finetune/jobs/upload-dataset)"
        ) from None
    except DatasetError:
        target.unlink(missing_ok=True)
        raise
    return Resolved(target, _checked(target, suffix, fmt, url), temporary=True, shown_path=url)


def resolve_dataset(
    state: AppState, user_id: int, source: str, path: str, fmt: str | None
) -> Resolved:
    """The file a fine-tune trains on; `fmt`: the format the request names, if it does."""
    folder = uploads.user_dataset_dir(state, user_id)
    if source in ("upload", "existing"):
        row = uploads.own_dataset(state, user_id, path)
        if row is None:
            raise _path_error(
                f"{path!r} is not a dataset you uploaded; upload it with POST "
                "/api/v1/finetune/jobs/upload-dataset and pass the dataset_path it returns"
            )
        if fmt is not None and fmt != row["format"]:
            raise DatasetError(
                f"the dataset was uploaded as {row['format']} (its records are {row['format']}"
                f" records), not {fmt}; set dataset_format={row['format']} or leave it out",
                ("body", "dataset_format"),
            )
        return Resolved(Path(row["path"]), str(row["format"]), temporary=False)
    if source == "huggingface":
        return _from_cache(state, path, fmt, folder)
    return _from_url(state, path, fmt, folder)


def model_paths(state: AppState, base_model: str) -> list[Path]:
    """Host paths the trainer reads for `base_model`: the model cache, a local model folder."""
    found = []
    hub = finetune_catalog.hub_cache(state.settings)
    if hub.is_dir():
        found.append(hub.resolve())
    local = finetune_catalog.readable_local_path(state.settings, base_model)
    if local is not None:
        found.append(local)
    return found
