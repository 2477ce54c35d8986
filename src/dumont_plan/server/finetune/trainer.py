"""LoRA fine-tune of a causal language model: `python -I trainer.py CONFIG.json`.

Standalone (standard library + torch, transformers, peft; never imports dumont_plan): the
executor runs it in the job's sandbox. CONFIG keys: base_model (a Hugging Face id, loaded offline
from the local cache, or a directory), dataset_path (.json/.jsonl), dataset_format
(alpaca|sharegpt|raw), config (the contract's nested hyper-parameters), output_dir,
progress_path, seed (3407), max_steps (null: all epochs). Writes `checkpoint-epoch-N/`,
`lora_model/` (adapter + tokenizer), `training_stats.json`, JSON progress events (loading, start,
step, checkpoint, done | error) and log lines on stdout; a failure is one `error` event and exit
1; SIGTERM exits 143. The loop is a plain one (AdamW, linear warm-up and decay, gradient
accumulation, loss over every token as the platform's SFTTrainer): no dearer than a bare loop.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any, NoReturn

# Never reach a model hub: set before transformers/huggingface_hub read them at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Library deprecation chatter and peft's "cannot check the vocabulary online" are noise here.
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", message="Could not find a config file")

DEFAULTS: dict[str, Any] = {
    "lora_rank": 16,
    "lora_alpha": 16,
    "learning_rate": 2e-4,
    "epochs": 1,
    "batch_size": 2,
    "gradient_accumulation_steps": 4,
    "max_seq_length": 2048,
    "warmup_steps": 5,
    "weight_decay": 0.01,
    "target_modules": None,
}
INT_FIELDS = ("lora_rank", "lora_alpha", "epochs", "batch_size", "gradient_accumulation_steps")
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
FORMATS = ("alpaca", "sharegpt", "raw")
HUMAN_ROLES = {"human": "Human", "user": "Human", "gpt": "Assistant", "assistant": "Assistant"}
HUMAN_ROLES["system"] = "System"


class Progress:
    """Appends one JSON object per line to progress_path and prints human lines."""

    def __init__(self) -> None:
        self.file: Any = None

    def open(self, path: str | None) -> None:
        if path and self.file is None:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115
            except OSError as exc:
                print(f"error: cannot write the progress file {path}: {exc}", file=sys.stderr)
                sys.exit(1)

    def event(self, name: str, **fields: Any) -> None:
        if self.file is not None:
            self.file.write(json.dumps({"event": name, **fields}) + "\n")
            self.file.flush()

    @staticmethod
    def say(line: str) -> None:
        print(line, flush=True)


PROGRESS = Progress()  # opened on the config's progress_path as soon as it is known


def fail(reason: str) -> NoReturn:
    """Stop with one clear sentence: an `error` event, the line on stderr, exit code 1.

    (A function, not an exception class: this script cannot import the package's error tree.)
    """
    PROGRESS.event("error", reason=reason)
    print(f"error: {reason}", file=sys.stderr, flush=True)
    sys.exit(1)


# ---------------------------------------------------------------------------------------------
# Config and dataset


def _number(cfg: dict[str, Any], key: str, integer: bool, minimum: float) -> None:
    value = cfg[key]
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or value < minimum or not math.isfinite(value):
        kind = "an integer" if integer else "a number"
        fail(f"config.{key} must be {kind} >= {minimum:g}, got {value!r}")


def load_config(path: str) -> dict[str, Any]:
    """Read and check the job's config file; every problem names the field."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"cannot read the trainer config {path}: {exc}")
    if not isinstance(raw, dict):
        fail(f"the trainer config {path} must be a JSON object")
    for key in ("base_model", "dataset_path", "output_dir"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            fail(f"the trainer config needs {key} (a non-empty string)")
    fmt = raw.get("dataset_format") or "alpaca"
    if fmt not in FORMATS:
        fail(f"dataset_format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    given = raw.get("config") or {}
    if not isinstance(given, dict):
        fail("config must be an object of hyper-parameters")
    unknown = sorted(set(given) - set(DEFAULTS) - {"turbo_mode", "base_model", "output_dir"})
    if unknown:
        fail(f"unknown hyper-parameter config.{unknown[0]}")
    hyper = {**DEFAULTS, **{k: v for k, v in given.items() if k in DEFAULTS and v is not None}}
    for key in INT_FIELDS:
        _number(hyper, key, True, 1)
    _number(hyper, "max_seq_length", True, 8)
    _number(hyper, "warmup_steps", True, 0)
    _number(hyper, "learning_rate", False, 0)
    _number(hyper, "weight_decay", False, 0)
    targets = hyper["target_modules"]
    if targets is not None and (
        not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets)
    ):
        fail("config.target_modules must be a non-empty list of module names")
    seed = raw.get("seed", 3407)
    seed = 3407 if seed is None else seed
    max_steps = raw.get("max_steps")
    for key, value in (("seed", seed), ("max_steps", max_steps)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            fail(f"{key} must be an integer, got {value!r}")
    if max_steps is not None and max_steps < 1:
        fail(f"max_steps must be >= 1 or null, got {max_steps}")
    return {
        "base_model": raw["base_model"],
        "dataset_path": raw["dataset_path"],
        "dataset_format": fmt,
        "output_dir": raw["output_dir"],
        "progress_path": raw.get("progress_path"),
        "seed": seed,
        "max_steps": max_steps,
        "hyper": hyper,
    }


def read_records(path: str) -> list[tuple[int, Any]]:
    """(line number, record) pairs of a .json array or a JSON-lines file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read the dataset {path}: {exc}")
    if path.endswith(".json"):
        try:
            whole = json.loads(text)
        except ValueError:
            whole = None  # a .json file holding JSON lines
        if isinstance(whole, list):
            return [(i + 1, record) for i, record in enumerate(whole)]
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append((number, json.loads(line)))
            except ValueError as exc:
                fail(f"dataset line {number} is not valid JSON: {exc}")
    return records


def _text_field(record: dict[str, Any], key: str, where: str, required: bool = True) -> str:
    value = record.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        fail(f"{where}: field '{key}' must be a string")
    return value


def render(record: Any, fmt: str, eos: str, where: str) -> str:
    """One training text per the contract's dataset formats (§6.3)."""
    if not isinstance(record, dict):
        fail(f"{where}: a record must be a JSON object")
    if fmt == "raw":
        return _text_field(record, "text", where)
    if fmt == "alpaca":
        instruction = _text_field(record, "instruction", where)
        extra = _text_field(record, "input", where, required=False)
        output = _text_field(record, "output", where)
        parts = [f"### Instruction:\n{instruction}"]
        if extra.strip():
            parts.append(f"### Input:\n{extra}")
        parts.append(f"### Response:\n{output}")
        return "\n\n".join(parts) + eos
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        fail(f"{where}: field 'conversations' must be a non-empty list")
    lines = []
    for index, turn in enumerate(turns):
        here = f"{where}, conversations[{index}]"
        if not isinstance(turn, dict):
            fail(f"{here}: a turn must be an object")
        role = turn.get("from", turn.get("role"))
        if role not in HUMAN_ROLES:
            fail(f"{here}: field 'from' must be human, user, gpt, assistant or system")
        value = turn.get("value", turn.get("content"))
        if not isinstance(value, str):
            fail(f"{here}: field 'value' must be a string")
        lines.append(f"### {HUMAN_ROLES[role]}: {value}")
    return "\n".join(lines) + eos


# ---------------------------------------------------------------------------------------------
# Model


def load_model(base_model: str, hyper: dict[str, Any], device: Any) -> tuple[Any, Any]:
    """Tokenizer and LoRA-wrapped model, loaded offline (4-bit / Unsloth only on CUDA)."""
    import importlib.util

    import torch

    cuda = device.type == "cuda"
    lora = {"r": hyper["lora_rank"], "lora_alpha": hyper["lora_alpha"], "lora_dropout": 0.0}
    if cuda and importlib.util.find_spec("unsloth") is not None:
        return _load_unsloth(base_model, hyper, lora)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {}
    quantized = cuda and importlib.util.find_spec("bitsandbytes") is not None
    if quantized:
        from transformers import BitsAndBytesConfig

        quantization: Any = BitsAndBytesConfig  # untyped in transformers
        kwargs["quantization_config"] = quantization(
            load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_quant_type="nf4"
        )
    else:
        kwargs["dtype"] = torch.float32
    model: Any
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model)
        model = AutoModelForCausalLM.from_pretrained(base_model, **kwargs)
    except OSError as exc:
        print(f"loading {base_model} failed: {exc}".splitlines()[0], flush=True)
        fail(missing_model_reason(base_model, exc))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    from peft import LoraConfig, get_peft_model

    if quantized:
        from peft import prepare_model_for_kbit_training

        prepare: Any = prepare_model_for_kbit_training  # untyped in peft
        model = prepare(model)
    targets = hyper["target_modules"] or default_targets(model)
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in present]
    if missing:
        fail(f"config.target_modules: {missing[0]!r} is not a module of {base_model}")
    hyper["target_modules"] = list(targets)
    config = LoraConfig(**lora, target_modules=list(targets), bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    if not quantized:
        model.to(device)
    return tokenizer, model


def _load_unsloth(base_model: str, hyper: dict[str, Any], lora: dict[str, Any]) -> tuple[Any, Any]:
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=base_model, max_seq_length=hyper["max_seq_length"], load_in_4bit=True
    )
    hyper["target_modules"] = list(hyper["target_modules"] or PROJECTIONS)
    model = FastLanguageModel.get_peft_model(
        model, **lora, target_modules=hyper["target_modules"], use_gradient_checkpointing="unsloth"
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


def default_targets(model: Any) -> list[str]:
    """The attention and MLP projections this model has (q/k/v/o/gate/up/down)."""
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    found = [p for p in PROJECTIONS if p in names]
    if not found:
        fail(
            "the model has none of the q/k/v/o/gate/up/down projections: "
            "set config.target_modules to its linear layers' names"
        )
    return found


def missing_model_reason(base_model: str, exc: Exception) -> str:
    if os.path.isabs(base_model) or base_model.startswith((".", "~")):
        return f"base model {base_model} is not a readable model directory ({exc})"
    cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", "~/.cache/huggingface"), "hub"
    )
    return (
        f"base model {base_model} is not in the local Hugging Face cache ({cache}) and models "
        f"are loaded offline: run `huggingface-cli download {base_model}` on a machine with "
        "access and copy its cache there, or pass a local model directory as base_model"
    )


# ---------------------------------------------------------------------------------------------
# Training


def batches(
    examples: list[list[int]], batch_size: int, pad_id: int, order: list[int], device: Any
) -> list[dict[str, Any]]:
    """Padded micro-batches: the model's keyword arguments (labels -100 on padding)."""
    import torch

    out = []
    for start in range(0, len(order), batch_size):
        rows = [examples[i] for i in order[start : start + batch_size]]
        width = max(len(row) for row in rows)
        ids = torch.tensor([row + [pad_id] * (width - len(row)) for row in rows])
        mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
        labels = ids.masked_fill(mask == 0, -100)
        out.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return [{key: value.to(device) for key, value in batch.items()} for batch in out]


def train(job: dict[str, Any], progress: Progress) -> dict[str, Any]:
    hyper, fmt = job["hyper"], job["dataset_format"]
    progress.event("loading", message=f"reading the {fmt} dataset")
    texts = [  # checked before the (slow) imports and model load; EOS added with the tokenizer
        render(record, fmt, "", f"dataset line {number}")
        for number, record in read_records(job["dataset_path"])
    ]
    if not texts:
        fail(f"the dataset {job['dataset_path']} has no records")
    import torch

    random.seed(job["seed"])
    torch.manual_seed(job["seed"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    progress.event("loading", message=f"loading {job['base_model']} on {device.type}")
    progress.say(f"loading {job['base_model']} on {device.type}")
    tokenizer, model = load_model(job["base_model"], hyper, device)
    if fmt != "raw":
        texts = [text + (tokenizer.eos_token or "") for text in texts]
    encoded = tokenizer(texts, truncation=True, max_length=hyper["max_seq_length"])
    examples = [list(ids) for ids in encoded["input_ids"] if len(ids) > 0]

    batch_size, accumulation = hyper["batch_size"], hyper["gradient_accumulation_steps"]
    micro_per_epoch = math.ceil(len(examples) / batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / accumulation)
    epochs = hyper["epochs"]
    total_steps = steps_per_epoch * epochs
    if job["max_steps"] is not None:
        total_steps = min(total_steps, job["max_steps"])
        epochs = math.ceil(total_steps / steps_per_epoch)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=hyper["learning_rate"], weight_decay=hyper["weight_decay"]
    )
    warmup = hyper["warmup_steps"]

    def schedule(step: int) -> float:  # linear warm-up, then linear decay to 0
        if step < warmup:
            return float((step + 1) / (warmup + 1))
        return float(max(0.0, (total_steps - step) / max(1, total_steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    out = Path(job["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    progress.event("start", total_steps=total_steps, epochs=epochs, records=len(examples))
    progress.say(f"training {len(examples)} records: {epochs} epoch(s), {total_steps} steps")

    model.train()
    generator = random.Random(job["seed"])
    step, losses, tokens, samples, checkpoint_seconds = 0, [], 0, 0, 0.0
    started, started_cpu = time.monotonic(), time.process_time()
    for epoch in range(1, epochs + 1):
        order = list(range(len(examples)))
        generator.shuffle(order)
        micro = batches(examples, batch_size, tokenizer.pad_token_id, order, device)
        for group_start in range(0, len(micro), accumulation):
            if step >= total_steps:
                break
            group = micro[group_start : group_start + accumulation]
            group_loss = 0.0
            for batch in group:
                loss = model(**batch).loss
                (loss / len(group)).backward()
                group_loss += float(loss.detach()) / len(group)
                tokens += int(batch["attention_mask"].sum())
                samples += int(batch["input_ids"].shape[0])
            learning_rate = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            losses.append(group_loss)
            fraction = (epoch - 1) + min(1.0, (group_start + len(group)) / len(micro))
            progress.event(
                "step",
                step=step,
                total_steps=total_steps,
                epoch=round(fraction, 4),
                loss=round(group_loss, 6),
                learning_rate=learning_rate,
            )
            progress.say(
                f"epoch {epoch}/{epochs} step {step}/{total_steps} loss {group_loss:.4f} "
                f"lr {learning_rate:.3g}"
            )
        name = f"checkpoint-epoch-{epoch}"
        saving = time.monotonic()
        model.save_pretrained(out / name)
        checkpoint_seconds += time.monotonic() - saving
        progress.event("checkpoint", epoch=epoch, path=name)
        progress.say(f"saved {name}")
    runtime, cpu = time.monotonic() - started, time.process_time() - started_cpu

    final = out / "lora_model"
    model.save_pretrained(final)
    tokenizer.save_pretrained(final)
    stats = {
        "train_loss": sum(losses) / len(losses),
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "runtime_seconds": round(runtime, 3),
        "checkpoint_seconds": round(checkpoint_seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "steps": step,
        "epochs": epochs,
        "records": len(examples),
        "tokens": tokens,
        "samples_per_second": round(samples / runtime, 3) if runtime else None,
        "steps_per_second": round(step / runtime, 3) if runtime else None,
        "tokens_per_second": round(tokens / runtime, 3) if runtime else None,
        "device": device.type,
        "dataset_format": fmt,
        "config": {**hyper, **{k: job[k] for k in ("base_model", "seed", "max_steps")}},
    }
    (out / "training_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def _stop(signum: int, frame: Any) -> NoReturn:
    print("stopped by SIGTERM", flush=True)
    os._exit(143)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -I trainer.py CONFIG.json", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _stop)
    PROGRESS.open(_progress_path_of(argv[1]))  # so that even a bad config is reported there
    try:
        job = load_config(argv[1])
        stats = train(job, PROGRESS)
    except Exception as exc:  # the user gets one line; the traceback stays out of the event
        fail(f"training failed: {type(exc).__name__}: {exc}".splitlines()[0])
    PROGRESS.event(
        "done",
        output_model_path=str(Path(job["output_dir"]) / "lora_model"),
        train_loss=stats["train_loss"],
        runtime_seconds=stats["runtime_seconds"],
        steps=stats["steps"],
    )
    PROGRESS.say(f"done: {stats['steps']} steps, train loss {stats['train_loss']:.4f}")
    return 0


def _progress_path_of(config_path: str) -> str | None:
    try:
        value = json.loads(Path(config_path).read_text(encoding="utf-8")).get("progress_path")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


if __name__ == "__main__":
    sys.exit(main(sys.argv))
