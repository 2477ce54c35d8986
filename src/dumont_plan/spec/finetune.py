"""`finetunes:` — train a LoRA adapter for a base model on a dataset, once (contract §6)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from dumont_plan.spec.common import Lifecycle, SpecModel

DATASET_SUFFIXES = (".json", ".jsonl")
_HF_ID = re.compile(r"^(hf:|huggingface:)?[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def remote_dataset_source(text: str) -> str | None:
    """The `dataset_source` of a dataset that is not a file here: `url` for http(s), `upload`
    for an absolute .json/.jsonl path (one an upload answered), `huggingface` for
    `owner/name`; None for anything else (a local file, or nothing known)."""
    value = text.strip()
    if re.match(r"^https?://", value, re.IGNORECASE):
        return "url"
    if value.startswith("/") and value.endswith(DATASET_SUFFIXES):
        return "upload"
    if _HF_ID.match(value) and not value.endswith(DATASET_SUFFIXES):
        return "huggingface"
    return None


def file_sha256(path: Path) -> str:
    """The sha256 of a file's content (read in 1 MiB chunks): what tracks a local dataset."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def hf_dataset_id(text: str) -> str:
    """`hf:owner/name` -> `owner/name`."""
    value = text.strip()
    return value.split(":", 1)[1] if value.startswith(("hf:", "huggingface:")) else value


class FinetuneConfigSpec(SpecModel):
    """Hyper-parameters, nested as the API takes them (contract §6.3); unset: the server's."""

    epochs: int | None = Field(None, ge=1, le=10, description="Epochs (1-10; server default 1).")
    learning_rate: float | None = Field(
        None, ge=1e-6, le=1e-2, description="Learning rate (1e-6 to 1e-2; default 2e-4)."
    )
    lora_rank: int | None = Field(None, ge=4, le=128, description="LoRA r (4-128; default 16).")
    lora_alpha: int | None = Field(
        None, ge=4, le=128, description="LoRA alpha (4-128; default 16)."
    )
    batch_size: int | None = Field(
        None, ge=1, le=65536, description="Per-device batch size (default 2)."
    )
    gradient_accumulation_steps: int | None = Field(
        None, ge=1, le=128, description="Gradient accumulation steps (1-128; default 4)."
    )
    max_seq_length: int | None = Field(
        None, ge=256, le=65536, description="Longest sequence in tokens (256-65536; default 2048)."
    )
    warmup_steps: int | None = Field(
        None, ge=0, le=10000, description="Warm-up steps (0-10000; default 5)."
    )
    weight_decay: float | None = Field(
        None, ge=0, le=1, description="Weight decay (0-1; default 0.01)."
    )


class FinetuneSpec(SpecModel):
    """A fine-tune: trains once (by default) and keeps its adapter as its output."""

    # Attributes other resources may reference as `${finetune.NAME.ATTR}`.
    REF_ATTRS: ClassVar[frozenset[str]] = frozenset(
        {"id", "name", "status", "output_model_path", "base_model"}
    )

    # Hyper-parameters written beside `base_model` instead of under `config` (the real
    # platform silently ignores them there): the message says where they go.
    NESTED_FIELDS: ClassVar[dict[str, str]] = dict.fromkeys(
        FinetuneConfigSpec.model_fields, "config"
    )

    base_model: str = Field(
        ...,
        description="Base model id, e.g. `unsloth/llama-3-8b-bnb-4bit` (`dumont finetune models`).",
    )
    dataset: str = Field(
        ...,
        description=(
            "A local .json/.jsonl file (relative to this spec file; uploaded at apply, tracked "
            "by its content), an http(s) URL, a path an upload answered, or a Hugging Face "
            "dataset id `owner/name`."
        ),
    )
    dataset_sha256: str | None = Field(
        None,
        description=(
            "The local dataset file's sha256. Filled by dumont; set it to pin the content "
            "(a file that differs is an error)."
        ),
    )
    dataset_format: Literal["alpaca", "sharegpt", "raw"] = Field(
        "alpaca",
        description="`alpaca` (instruction, input, output), `sharegpt` (conversations) or "
        "`raw` (text).",
    )
    config: FinetuneConfigSpec = Field(
        default_factory=FinetuneConfigSpec,
        description="Hyper-parameters (`epochs`, `learning_rate`, `lora_rank`, ...).",
    )
    preset: str | None = Field(
        None, description="A named preset (`dumont finetune presets`); `config` values win."
    )
    gpu_type: str = Field("A100", description="GPU type, e.g. `A100`, `H100`, `RTX 4090`.")
    num_gpus: int = Field(1, ge=1, le=8, description="Number of GPUs (1-8).")
    max_hours: float = Field(
        4,
        gt=0,
        le=168,
        description="The longest the training is expected to take, in hours: the plan's "
        "worst-case cost is the GPU's $/h times this.",
    )
    run_policy: Literal["once", "on_change", "always"] = Field(
        "once",
        description=(
            "`once`: a finished fine-tune never re-runs; `on_change`: re-run when the spec or "
            "the dataset file changes; `always`: re-run on every apply."
        ),
    )
    wait: Literal["none", "running", "completed"] = Field(
        "none", description="What `apply` waits for after creating it."
    )
    depends_on: list[str] = Field(
        default_factory=list, description="Addresses (`kind.name`) to apply before this one."
    )
    lifecycle: Lifecycle = Field(
        default_factory=Lifecycle,
        description="Guards on changes: `prevent_destroy`, `ignore_changes`.",
    )

    @field_validator("dataset")
    @classmethod
    def _some_dataset(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("empty; name a .jsonl file, an https:// URL or owner/name")
        return value.strip()

    @field_validator("dataset_sha256")
    @classmethod
    def _a_sha256(cls, value: str | None) -> str | None:
        if value is not None and not _SHA256.match(value.strip().lower()):
            raise ValueError(f"{value!r} is not a sha256 (64 hexadecimal digits)")
        return value.strip().lower() if value is not None else None

    @model_validator(mode="after")
    def _hash_only_for_files(self) -> FinetuneSpec:
        if self.dataset_sha256 is not None and remote_dataset_source(self.dataset) is not None:
            raise ValueError(
                "`dataset_sha256` pins a local dataset file; this dataset is not one "
                "(remove dataset_sha256)"
            )
        return self
