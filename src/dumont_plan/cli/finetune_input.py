"""What `dumont finetune create` sends: the dataset's source, the nested config, presets.

`--dataset` is one word for four things (contract §6.3 `dataset_source`): a local file
(uploaded first), a path the server answered to an upload, an http(s) URL, or a Hugging Face
dataset id (`owner/name`). `classify_dataset` decides which, offline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from dumont_plan.cli import durations
from dumont_plan.client.base import error_message
from dumont_plan.errors import DumontError, UnprocessableError
from dumont_plan.spec.finetune import DATASET_SUFFIXES, hf_dataset_id, remote_dataset_source
from dumont_plan.spec.messages import suggest
from dumont_plan.wire import FINETUNE_STATUSES
from dumont_plan.wire_models import FinetunePreset

FORMATS = ("alpaca", "sharegpt", "raw")

# Flag -> the nested `config` field it sets (contract §6.3), with its range for messages.
CONFIG_FLAGS = {
    "epochs": ("--epochs", "1–10"),
    "learning_rate": ("--lr", "1e-6–1e-2"),
    "lora_rank": ("--lora-rank", "4–128"),
    "lora_alpha": ("--lora-alpha", "4–128"),
    "batch_size": ("--batch-size", "1–65536"),
    "max_seq_length": ("--max-seq-length", "256–65536"),
    "gradient_accumulation_steps": ("--grad-accum", "1–128"),
    "warmup_steps": ("--warmup-steps", "0–10000"),
    "weight_decay": ("--weight-decay", "0–1"),
}
TOP_FLAGS = {
    "name": "NAME",
    "base_model": "--model",
    "dataset_path": "--dataset",
    "dataset_source": "--dataset",
    "dataset_format": "--format",
    "gpu_type": "--gpu",
    "num_gpus": "--num-gpus",
    "preset": "--preset",
}


# The ranges of contract §6.3, checked before anything is sent (a dry run sends nothing).
RANGES: dict[str, tuple[float, float]] = {
    "epochs": (1, 10),
    "learning_rate": (1e-6, 1e-2),
    "lora_rank": (4, 128),
    "lora_alpha": (4, 128),
    "batch_size": (1, 65536),
    "max_seq_length": (256, 65536),
    "gradient_accumulation_steps": (1, 128),
    "warmup_steps": (0, 10000),
    "weight_decay": (0, 1),
}


def check_ranges(config: Mapping[str, Any], num_gpus: int | None, where: str) -> None:
    """One line naming the first flag out of its range, with the range."""
    if num_gpus is not None and not 1 <= num_gpus <= 8:
        raise DumontError(f"{where}: --num-gpus={num_gpus} is out of range", "use 1–8")
    for field, (low, high) in RANGES.items():
        value = config.get(field)
        if value is not None and not low <= value <= high:
            flag, allowed = CONFIG_FLAGS[field]
            raise DumontError(f"{where}: {flag}={value:g} is out of range", f"use {allowed}")


# Arguments and options several commands share.
IdArg = typer.Argument(..., metavar="FINETUNE_ID", help="The fine-tune's id (from create/list).")
WaitTimeoutOpt = typer.Option(
    None,
    "--wait-timeout",
    help="With --wait/--follow: stop waiting after this long (30s, 15m, 2h; a bare number is "
    "seconds; exit 4). Default: no limit.",
    metavar="DURATION",
    parser=durations.seconds,
)
PollOpt = typer.Option(2.0, "--poll", min=0.1, help="Seconds between checks.")


@dataclass(frozen=True)
class DatasetChoice:
    """Where `--dataset` points: the API's `dataset_source` and `dataset_path`; `local` is a
    file on this machine to upload first (then `path` is the answered server path)."""

    source: str
    path: str
    local: Path | None = None


SOURCES = ("local", "upload", "existing", "url", "huggingface")


def classify_dataset(
    value: str, where: str = "finetune create", source: str | None = None
) -> DatasetChoice:
    """Decide `dataset_source` from what `--dataset` names (checked in this order):

    an existing local file -> upload it; `http(s)://…` -> url; an absolute path that is not
    here, ending .json/.jsonl -> a server path from an earlier upload; `owner/name` (or
    `hf:owner/name`) -> huggingface. `source` (--dataset-source) says it instead: `local`
    (a file here), or one of the API's sources, taken as given.
    """
    text = value.strip()
    if not text:
        raise DumontError(f"{where}: --dataset is empty", "name a .jsonl file, a URL or owner/name")
    if source is not None:
        check_choice(source, SOURCES, "--dataset-source", where)
        if source != "local":
            return DatasetChoice(source, hf_dataset_id(text) if source == "huggingface" else text)
    local = Path(text).expanduser()
    if source == "local" and not local.is_file():
        raise DumontError(f"{where}: --dataset={value}: no such file", "check the path")
    if local.is_file():
        if not local.name.endswith(DATASET_SUFFIXES):
            raise DumontError(
                f"{where}: --dataset={value}: only .json and .jsonl files can be uploaded",
                "save the records as JSON Lines (one JSON object a line) in a .jsonl file",
            )
        local = local.resolve()
        return DatasetChoice("upload", str(local), local)
    if local.is_dir():
        raise DumontError(
            f"{where}: --dataset={value} is a directory", "name one .json or .jsonl file in it"
        )
    source = remote_dataset_source(text)
    if source is not None:
        return DatasetChoice(source, hf_dataset_id(text) if source == "huggingface" else text)
    if text.endswith(DATASET_SUFFIXES):
        raise DumontError(
            f"{where}: --dataset={value}: no such file",
            "check the path, or upload it first: dumont finetune upload FILE",
        )
    raise DumontError(
        f"{where}: --dataset={value} is not a file here, a URL or a Hugging Face dataset id",
        "use a .jsonl file, https://…/data.jsonl, or owner/name",
    )


def check_choice(value: str, choices: Sequence[str], flag: str, where: str) -> str:
    """`value` when it is one of `choices`, else one line with a did-you-mean."""
    if value in choices:
        return value
    guess = suggest(value, list(choices))
    hint = (f"did you mean {guess!r}? " if guess else "") + "use one of: " + ", ".join(choices)
    raise DumontError(f"{where}: {flag}={value} is not one of {', '.join(choices)}", hint)


def check_status(status: str | None, where: str) -> str | None:
    if status is None:
        return None
    return check_choice(status, FINETUNE_STATUSES, "--status", where)


def merge_preset(
    presets: Sequence[FinetunePreset], name: str, explicit: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """The preset's config (all of it: `max_steps` too) with the explicit flags over it
    (explicit values win), as the server merges them."""
    by_name = {preset.name: preset for preset in presets}
    if name not in by_name:
        check_choice(name, sorted(by_name), "--preset", where)
    merged = dict(by_name[name].config)
    merged.update({k: v for k, v in explicit.items() if v is not None})
    return merged


def build_body(
    name: str,
    model: str,
    dataset: DatasetChoice,
    top: Mapping[str, Any],
    config: Mapping[str, Any],
) -> dict[str, Any]:
    """The create request (contract §6.3): `top` fields (dataset_format, gpu_type, num_gpus)
    beside the dataset, hyper-parameters nested under `config`; None values left out."""
    body: dict[str, Any] = {
        "name": name,
        "base_model": model,
        "dataset_source": dataset.source,
        "dataset_path": dataset.path,
        **top,
    }
    nested = {k: v for k, v in config.items() if v is not None}
    if nested:
        body["config"] = nested
    return {k: v for k, v in body.items() if v is not None}


def describe_rejection(exc: UnprocessableError, where: str) -> DumontError:
    """One line for a 422: each refused field by its flag, with the value and the range."""
    parts: list[str] = []
    for item in exc.details[:5]:
        loc = [str(p) for p in item.get("loc", []) if p not in ("body", "query")]
        field = loc[-1] if loc else ""
        flag, allowed = CONFIG_FLAGS.get(field, (TOP_FLAGS.get(field, field), None))
        msg = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        value = item.get("input")
        text = f"{flag}={value}" if flag and isinstance(value, int | float | str) else flag
        text = f"{text or 'request'}: {msg[:1].lower()}{msg[1:]}"
        if allowed:
            text += f" (use {allowed})"
        parts.append(text)
    if not parts:
        parts.append(error_message(exc.body, str(exc)))
    return DumontError(f"{where}: the API refused the fine-tune: " + "; ".join(parts))
