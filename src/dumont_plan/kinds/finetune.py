"""`finetune.*`: train a LoRA adapter once (contract §6); run policies decide re-runs.

Planned as jobs are (`kinds/runonce.py`): a finished fine-tune whose spec is unchanged is a
no-op; under `on_change` a changed spec *or dataset file* (`dataset_sha256`, filled by the
loader from the file's content) runs it again. `max_hours` only bounds the plan's worst-case
cost: changing it records the new value and re-runs nothing. The API echoes the config, but it
cannot change by itself, so drift is only the status (failed, gone).

Cost: the GPU's $/h is the cheapest matching offer's (`gpu_type` x `num_gpus`, on-demand
`dph_total`); the worst case is that times `max_hours`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel

from dumont_plan.kinds.base import FieldClass
from dumont_plan.kinds.decision import FieldChange
from dumont_plan.kinds.runonce import RunOnceHandler
from dumont_plan.spec.finetune import FinetuneSpec, hf_dataset_id, remote_dataset_source
from dumont_plan.wire_models import (
    FINETUNE_FAILED_STATUSES,
    FINETUNE_FINISHED_STATUSES,
    Finetune,
    Offer,
    WireModel,
)

_R, _C, _O = FieldClass.replace, FieldClass.control, FieldClass.output

FINETUNE_FIELDS: dict[str, FieldClass] = {
    "name": FieldClass.identity,
    "base_model": _R,
    "dataset": _R,
    "dataset_sha256": _R,
    "dataset_format": _R,
    "config": _R,
    "preset": _R,
    "gpu_type": _R,
    "num_gpus": _R,
    "max_hours": FieldClass.updatable,
    "run_policy": _C,
    "wait": _C,
    "depends_on": _C,
    "lifecycle": _C,
    "id": _O,
    "status": _O,
    "current_epoch": _O,
    "current_step": _O,
    "total_steps": _O,
    "loss": _O,
    "progress_percent": _O,
    "created_at": _O,
    "started_at": _O,
    "completed_at": _O,
    "output_model_path": _O,
    "error_message": _O,
}


def gpu_key(name: str) -> str:
    """`A100-80GB`, `A100 80GB` and `a100 80gb` are one GPU."""
    return "".join(ch for ch in name.casefold() if ch.isalnum())


class FinetuneHandler(RunOnceHandler[Finetune]):
    kind: ClassVar[str] = "finetune"
    section: ClassVar[str] = "finetunes"
    spec_model: ClassVar[type[BaseModel]] = FinetuneSpec
    live_model: ClassVar[type[WireModel]] = Finetune
    fields: ClassVar[dict[str, FieldClass]] = FINETUNE_FIELDS
    noun: ClassVar[str] = "fine-tune"
    record_only: ClassVar[frozenset[str]] = frozenset({"max_hours"})
    notes: ClassVar[dict[str, str]] = {
        "name": "<project>-<name>; the ledger finds a lost fine-tune by it",
        "dataset": "a local file is uploaded at apply; a URL or owner/name is read by the trainer",
        "dataset_sha256": "the local file's content: a change is 'dataset changed'",
        "config": "hyper-parameters, nested as the API takes them",
        "gpu_type": "priced from live offers (cheapest on-demand)",
        "max_hours": "bounds the worst-case cost (price x max_hours); recorded only",
        "run_policy": "once | on_change | always",
        "wait": "none | running | completed",
    }

    finished_statuses: ClassVar[frozenset[str]] = FINETUNE_FINISHED_STATUSES
    failed_statuses: ClassVar[frozenset[str]] = FINETUNE_FAILED_STATUSES

    # -- live objects ----------------------------------------------------------------------

    def describe(self, values: Mapping[str, Any]) -> str:
        count = int(values.get("num_gpus") or 1)
        gpu = str(values.get("gpu_type") or "")
        model = str(values.get("base_model") or "")
        return f"{model} on {count}x {gpu}" if count > 1 else f"{model} on {gpu}"

    def change_words(self, changes: Sequence[FieldChange]) -> str:
        words = ["dataset changed" if c.field == "dataset_sha256" else c.field for c in changes]
        return ", ".join(words)

    # -- desired values --------------------------------------------------------------------

    def normalize(self, field: str, value: Any) -> Any:
        if field == "gpu_type" and isinstance(value, str):
            return gpu_key(value)
        if field == "config" and isinstance(value, dict):
            return {k: v for k, v in value.items() if v is not None}
        return value

    def request_body(self, project: str, name: str, values: dict[str, Any]) -> dict[str, Any]:
        """The create request (contract §6.3). A local dataset file is sent as
        `dataset_source: upload` with its path and `dataset_sha256`: the ops upload it first
        and put the server's path in its place."""
        dataset = str(values.get("dataset") or "")
        source = remote_dataset_source(dataset)
        body: dict[str, Any] = {
            "name": self.remote_name(project, name, values),
            "base_model": values.get("base_model"),
            "dataset_source": source or "upload",
            "dataset_path": hf_dataset_id(dataset) if source == "huggingface" else dataset,
            "dataset_format": values.get("dataset_format"),
            "gpu_type": values.get("gpu_type"),
            "num_gpus": values.get("num_gpus"),
            "preset": values.get("preset"),
        }
        config = {k: v for k, v in dict(values.get("config") or {}).items() if v is not None}
        if config:
            body["config"] = config
        if source is None:
            body["dataset_sha256"] = values.get("dataset_sha256")
        return {k: v for k, v in body.items() if v is not None}

    # -- cost ------------------------------------------------------------------------------

    def price_query(self, values: Mapping[str, Any]) -> dict[str, Any] | None:
        return {
            "gpu_name": values.get("gpu_type"),
            "num_gpus": values.get("num_gpus") or 1,
            "max_price": 1000,
            "min_disk": 0,
            "min_inet_down": 0,
            "min_inet_up": 0,
            "order_by": "dph_total",
            "limit": 100,
        }

    def hourly_price(self, values: Mapping[str, Any], offers: Sequence[Offer]) -> float | None:
        gpu = gpu_key(str(values.get("gpu_type") or ""))
        count = int(values.get("num_gpus") or 1)
        prices = [
            offer.dph_total
            for offer in offers
            if gpu_key(offer.gpu_name or "") == gpu
            and (offer.num_gpus or 1) == count
            and offer.dph_total is not None
        ]
        return min(prices) if prices else None

    def max_hours(self, values: Mapping[str, Any]) -> float | None:
        hours = values.get("max_hours")
        return float(hours) if isinstance(hours, int | float) else None
