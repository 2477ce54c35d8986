"""What fine-tunes may use: the supported base models (§6.2), presets, the local Hugging Face
cache, and which executors can run here (`GET /finetune/status`).

The server's Hugging Face home (`ServerSettings.hf_home`) is read, never written: its model
cache `hub/` is what trainers load from, offline and read-only. Only `hub/` reaches a sandbox,
never the home itself (it may hold the operator's token).
"""

from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path
from typing import Any

import dumont_plan
from dumont_plan.server.provider import isolation, sky_outputs
from dumont_plan.server.settings import ServerSettings

FINETUNE_DIR = Path(dumont_plan.__file__).resolve().parent / "server" / "finetune"
TRAINER = FINETUNE_DIR / "trainer.py"
SERVER = FINETUNE_DIR / "serve.py"
TRAINING_MODULES = ("torch", "transformers", "peft")


def _model(
    model_id: str, name: str, params: str, vram: str, gpu: str, category: str, speed: str
) -> dict[str, str]:
    return {
        "id": model_id,
        "name": name,
        "parameters": params,
        "min_vram": vram,
        "recommended_gpu": gpu,
        "category": category,
        "training_speed": speed,
    }


MODELS = [
    _model(
        "unsloth/Phi-3-mini-4k-instruct-bnb-4bit",
        "Phi-3 Mini 4K",
        "3.8B",
        "8GB",
        "RTX 3080, RTX 4070",
        "ultra-light",
        "very-fast",
    ),
    _model(
        "unsloth/tinyllama-bnb-4bit",
        "TinyLlama 1.1B",
        "1.1B",
        "4GB",
        "RTX 3060, RTX 4060",
        "ultra-light",
        "very-fast",
    ),
    _model(
        "unsloth/stablelm-2-1_6b-bnb-4bit",
        "StableLM 2 1.6B",
        "1.6B",
        "6GB",
        "RTX 3060, RTX 4060",
        "ultra-light",
        "very-fast",
    ),
    *(
        _model(model_id, name, "7B", "12GB", "RTX 3090, RTX 4090", "light", "fast")
        for model_id, name in (
            ("unsloth/mistral-7b-bnb-4bit", "Mistral 7B"),
            ("unsloth/gemma-7b-bnb-4bit", "Gemma 7B"),
            ("unsloth/Qwen2-7B-bnb-4bit", "Qwen 2 7B"),
        )
    ),
    _model(
        "unsloth/llama-3-8b-bnb-4bit", "Llama 3 8B", "8B", "16GB", "RTX 4090, A100", "light", "fast"
    ),
    # Additive: named by the sprint's list of supported models, absent from the platform's.
    _model(
        "unsloth/llama-3-70b-bnb-4bit",
        "Llama 3 70B",
        "70B",
        "48GB",
        "A100 80GB, H100",
        "heavy",
        "slow",
    ),
    *(
        _model(model_id, name, "7B", "12GB", "RTX 3090, RTX 4090", "light", "fast")
        for model_id, name in (
            ("unsloth/zephyr-7b-beta-bnb-4bit", "Zephyr 7B Beta"),
            ("unsloth/openhermes-2.5-mistral-7b-bnb-4bit", "OpenHermes 2.5 7B"),
            ("unsloth/codellama-7b-bnb-4bit", "CodeLlama 7B"),
        )
    ),
]
MODEL_IDS = [m["id"] for m in MODELS]

# Named hyper-parameter bundles (additive): a create naming `preset` starts from one; the
# values it gives itself win.
PRESETS: dict[str, dict[str, Any]] = {
    "quick-test": {
        "description": "A smoke test: a few steps of a small adapter on short sequences.",
        "config": {
            "lora_rank": 8,
            "lora_alpha": 16,
            "learning_rate": 2e-4,
            "epochs": 1,
            "batch_size": 1,
            "gradient_accumulation_steps": 1,
            "max_seq_length": 256,
            "warmup_steps": 0,
            "weight_decay": 0.0,
            "max_steps": 10,
        },
    },
    "chat": {
        "description": "Conversational data (sharegpt): longer context, alpha 2x rank.",
        "config": {
            "lora_rank": 16,
            "lora_alpha": 32,
            "learning_rate": 2e-4,
            "epochs": 3,
            "batch_size": 2,
            "gradient_accumulation_steps": 4,
            "max_seq_length": 2048,
            "warmup_steps": 10,
            "weight_decay": 0.01,
        },
    },
    "instruct": {
        "description": "Instruction following (alpaca): the contract's defaults, two epochs.",
        "config": {
            "lora_rank": 16,
            "lora_alpha": 16,
            "learning_rate": 2e-4,
            "epochs": 2,
            "batch_size": 2,
            "gradient_accumulation_steps": 4,
            "max_seq_length": 1024,
            "warmup_steps": 5,
            "weight_decay": 0.01,
        },
    },
    "code": {
        "description": "Code: a larger adapter, lower learning rate, long sequences.",
        "config": {
            "lora_rank": 32,
            "lora_alpha": 64,
            "learning_rate": 1e-4,
            "epochs": 3,
            "batch_size": 1,
            "gradient_accumulation_steps": 8,
            "max_seq_length": 4096,
            "warmup_steps": 10,
            "weight_decay": 0.01,
        },
    },
}


def hub_cache(settings: ServerSettings) -> Path:
    return settings.hf_home / "hub"


def _cached(settings: ServerSettings, kind: str) -> list[str]:
    """Repo ids of the `kind` (models, datasets) with a snapshot in the Hugging Face cache."""
    hub = hub_cache(settings)
    if not hub.is_dir():
        return []
    found = []
    for entry in sorted(hub.glob(f"{kind}--*")):
        snapshots = entry / "snapshots"
        if snapshots.is_dir() and any(snapshots.iterdir()):
            found.append(entry.name.removeprefix(f"{kind}--").replace("--", "/"))
    return found


def cached_models(settings: ServerSettings) -> list[str]:
    return _cached(settings, "models")


def cached_datasets(settings: ServerSettings) -> list[str]:
    return _cached(settings, "datasets")


def dataset_snapshot(settings: ServerSettings, dataset_id: str) -> Path | None:
    """The newest snapshot folder of a cached Hugging Face dataset, or None."""
    folder = hub_cache(settings) / ("datasets--" + dataset_id.replace("/", "--")) / "snapshots"
    if not folder.is_dir():
        return None
    snapshots = sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime)
    return snapshots[-1] if snapshots else None


def readable_local_path(settings: ServerSettings, raw: str) -> Path | None:
    """A local model folder a fine-tune may use: on a single-user server any folder with a
    `config.json`; on a multi-user server only one inside the operator's shared dirs."""
    if not raw.startswith("/"):
        return None
    path = Path(raw).resolve()
    if not (path / "config.json").is_file():
        return None
    if path.is_relative_to(settings.data_dir.resolve()):
        return None
    if settings.multi_user and not any(
        path.is_relative_to(d.resolve()) for d in settings.shared_dirs
    ):
        return None
    return path


def suggestions(value: str, candidates: list[str]) -> list[str]:
    """Close matches of `value` among `candidates`, ignoring case."""
    lowered = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(value.lower(), list(lowered), n=3, cutoff=0.5)
    return [lowered[c] for c in close]


def base_model_problem(settings: ServerSettings, base_model: str) -> str | None:
    """Why `base_model` cannot be trained here, with did-you-mean; None when it can."""
    cached = cached_models(settings)
    if base_model in MODEL_IDS or base_model in cached:
        return None
    if base_model.startswith("/"):
        if readable_local_path(settings, base_model) is not None:
            return None
        where = "" if not settings.multi_user else " inside a folder the operator shares"
        return (
            f"{base_model} is not a model folder this server can read (a folder with "
            f"config.json{where}); give a supported model id (GET /api/v1/finetune/models)"
        )
    known = list(dict.fromkeys([*MODEL_IDS, *cached]))
    close = suggestions(base_model, known)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return (
        f"unknown base model {base_model!r}; {hint}use one of GET /api/v1/finetune/models, a "
        "model in the server's Hugging Face cache, or a local model folder"
    )


def _missing_modules() -> list[str]:
    return [m for m in TRAINING_MODULES if importlib.util.find_spec(m) is None]


def executor_status(settings: ServerSettings, sky_problem: str | None) -> dict[str, dict[str, Any]]:
    """Per executor: whether it can run fine-tunes here, and why not. `sky_problem`: why
    SkyPilot cannot run them (`sky_finetunes.skypilot_problem`: the executor chosen, then
    SkyPilot's own credential check); None: it can. On a server started with
    `--executor=skypilot`, fine-tunes run there, not locally."""
    local: list[str] = []
    if settings.executor == "skypilot":
        local.append("this control plane runs fine-tunes on SkyPilot (--executor=skypilot)")
    missing = _missing_modules()
    if missing:
        local.append(
            f"{', '.join(missing)} not installed; install them with: pip install "
            "'dumont-plan[finetune]'"
        )
    if not TRAINER.is_file():
        local.append("the trainer script is missing from this installation")
    sandbox = isolation.probe()
    notes = [] if sandbox is None else [f"workloads run unisolated: {sandbox}"]
    if sandbox is not None and settings.multi_user:
        local.append(sandbox)
    sky = [] if sky_problem is None else [sky_problem]
    sky_notes = [] if settings.sky_outputs else [sky_outputs.NOT_SET]
    return {
        "local": {"available": not local, "reasons": local, "notes": notes},
        "skypilot": {"available": not sky, "reasons": sky, "notes": sky_notes},
    }


def status(settings: ServerSettings, sky_problem: str | None) -> dict[str, Any]:
    """`GET /finetune/status`: the contract's fields, plus the executors (additive)."""
    executors = executor_status(settings, sky_problem)
    usable = [name for name, e in executors.items() if e["available"]]
    if usable:
        message = f"Fine-tuning available on: {', '.join(usable)}"
    else:
        reasons = "; ".join(r for e in executors.values() for r in e["reasons"])
        message = f"No fine-tuning backend available: {reasons}"
    return {
        "skypilot_available": executors["skypilot"]["available"],
        "vast_available": False,
        "finetune_available": bool(usable),
        "message": message,
        "executors": executors,
        "cached_models": cached_models(settings),
    }
