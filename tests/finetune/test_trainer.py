"""The LoRA trainer script, run as the executor runs it (`python -I trainer.py CONFIG.json`) on
tiny Llama and Qwen2 models loaded offline from a temporary Hugging Face cache under the real ids.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.finetune.tinymodels import LLAMA_ID, QWEN2_ID, cache_dir_for, write_dataset

TRAINER = Path(__file__).resolve().parents[2] / "src/dumont_plan/server/finetune/trainer.py"
PROJECTIONS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
# Settings under which the loss on the tiny repetitive dataset falls within a few steps.
FAST: dict[str, Any] = {
    "lora_rank": 8,
    "lora_alpha": 16,
    "learning_rate": 1e-2,
    "epochs": 2,
    "batch_size": 4,
    "gradient_accumulation_steps": 1,
    "max_seq_length": 256,
    "warmup_steps": 0,
    "weight_decay": 0.0,
}


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[str], work: Path) -> None:
        self.proc = proc
        self.out = work / "out"
        progress = work / "out/progress.jsonl"
        lines = progress.read_text().splitlines() if progress.exists() else []
        self.events = [json.loads(line) for line in lines]

    def of(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]


def trainer_env(hf_home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(hf_home),
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        # Tiny models on 2 shared cores: one thread is several times faster than two.
        "OMP_NUM_THREADS": "1",
    }


def write_config(work: Path, **fields: Any) -> Path:
    """The trainer's config; its progress file sits in the (not yet made) output folder."""
    work.mkdir(parents=True, exist_ok=True)
    config = {
        "output_dir": str(work / "out"),
        "progress_path": str(work / "out/progress.jsonl"),
        **fields,
    }
    path = work / "config.json"
    path.write_text(json.dumps(config))
    return path


def train(work: Path, hf_home: Path, timeout: float = 120, **fields: Any) -> Run:
    config = write_config(work, **fields)
    proc = subprocess.run(
        [sys.executable, "-I", str(TRAINER), str(config)],
        env=trainer_env(hf_home),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Run(proc, work)


def assert_trained(run: Run, rank: int, alpha: int) -> None:
    assert run.proc.returncode == 0, run.proc.stderr[-2000:]
    steps = run.of("step")
    assert steps and steps[0]["loss"] > steps[-1]["loss"], [s["loss"] for s in steps]
    adapter = json.loads((run.out / "lora_model/adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (rank, alpha)
    assert (run.out / "lora_model/adapter_model.safetensors").is_file()
    assert (run.out / "lora_model/tokenizer_config.json").is_file()


@pytest.fixture(scope="module")
def llama_alpaca(tiny_hf_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One 2-epoch alpaca run on the tiny Llama, shared by the checks below."""
    work = tmp_path_factory.mktemp("llama-alpaca")
    data = write_dataset(work / "data.jsonl", "alpaca", copies=8)
    return train(
        work,
        tiny_hf_home,
        base_model=LLAMA_ID,
        dataset_path=str(data),
        dataset_format="alpaca",
        config=FAST,
    )


@pytest.mark.slow
def test_llama_alpaca_lora_config_and_falling_loss(llama_alpaca: Run) -> None:
    assert_trained(llama_alpaca, rank=8, alpha=16)
    adapter = json.loads((llama_alpaca.out / "lora_model/adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == PROJECTIONS
    assert adapter["base_model_name_or_path"] == LLAMA_ID


@pytest.mark.slow
def test_progress_events_in_order_with_every_step(llama_alpaca: Run) -> None:
    names = [e["event"] for e in llama_alpaca.events]
    assert names[0] == "loading" and names[-1] == "done"
    start = llama_alpaca.of("start")[0]
    # 16 records, batch 4, no accumulation: 4 optimizer steps per epoch, 2 epochs.
    assert start == {"event": "start", "total_steps": 8, "epochs": 2, "records": 16}
    steps = llama_alpaca.of("step")
    assert [s["step"] for s in steps] == list(range(1, 9))
    assert all(s["total_steps"] == 8 for s in steps)
    assert [s["epoch"] for s in steps] == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    # No warm-up: linear decay from the requested rate.
    assert steps[0]["learning_rate"] == pytest.approx(1e-2)
    assert steps[-1]["learning_rate"] == pytest.approx(1e-2 / 8)
    done = llama_alpaca.of("done")[0]
    assert done["output_model_path"] == str(llama_alpaca.out / "lora_model")
    assert done["steps"] == 8 and done["runtime_seconds"] > 0
    assert "epoch 1/2 step 1/8 loss" in llama_alpaca.proc.stdout


@pytest.mark.slow
def test_a_checkpoint_per_epoch(llama_alpaca: Run) -> None:
    checkpoints = llama_alpaca.of("checkpoint")
    assert checkpoints == [
        {"event": "checkpoint", "epoch": 1, "path": "checkpoint-epoch-1"},
        {"event": "checkpoint", "epoch": 2, "path": "checkpoint-epoch-2"},
    ]
    for n in (1, 2):
        assert (llama_alpaca.out / f"checkpoint-epoch-{n}/adapter_model.safetensors").is_file()
    names = [e["event"] for e in llama_alpaca.events]
    assert names.index("checkpoint") == names.index("step") + 4  # after epoch 1's 4 steps


@pytest.mark.slow
def test_training_stats(llama_alpaca: Run) -> None:
    stats = json.loads((llama_alpaca.out / "training_stats.json").read_text())
    steps = llama_alpaca.of("step")
    assert stats["steps"] == 8 and stats["records"] == 16 and stats["epochs"] == 2
    assert stats["train_loss"] == pytest.approx(sum(s["loss"] for s in steps) / 8, rel=1e-4)
    assert stats["runtime_seconds"] > 0 and stats["samples_per_second"] > 0
    assert stats["cpu_seconds"] > 0 and 0 < stats["checkpoint_seconds"] < stats["runtime_seconds"]
    assert stats["config"]["lora_rank"] == 8 and stats["config"]["learning_rate"] == 1e-2
    assert stats["config"]["base_model"] == LLAMA_ID
    assert stats["config"]["seed"] == 3407


GENERATE = """
import sys, torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
base = AutoModelForCausalLM.from_pretrained(sys.argv[1])
tokenizer = AutoTokenizer.from_pretrained(sys.argv[2])
model = PeftModel.from_pretrained(base, sys.argv[2])
ids = tokenizer("### Instruction:\\nSay hello.", return_tensors="pt")
with torch.no_grad():
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
print(int(out.shape[1] - ids["input_ids"].shape[1]), len(lora_b),
      sum(float(p.abs().sum()) > 0 for p in lora_b))
"""


@pytest.mark.slow
def test_adapter_loads_with_peft_and_generates(llama_alpaca: Run, tiny_hf_home: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            GENERATE,
            str(cache_dir_for(tiny_hf_home, LLAMA_ID)),
            str(llama_alpaca.out / "lora_model"),
        ],
        env=trainer_env(tiny_hf_home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    new_tokens, adapters, trained = map(int, proc.stdout.split())
    assert new_tokens == 5
    # One LoRA B per projection and layer; training moved them from their zero start.
    assert adapters == 7 * 2 and trained == adapters


@pytest.mark.slow
def test_qwen2_sharegpt(tiny_hf_home: Path, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "chat.json", "sharegpt", copies=8, jsonl=False)
    run = train(
        tmp_path,
        tiny_hf_home,
        base_model=QWEN2_ID,
        dataset_path=str(data),
        dataset_format="sharegpt",
        config={**FAST, "lora_rank": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
    )
    assert_trained(run, rank=4, alpha=8)
    adapter = json.loads((run.out / "lora_model/adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == {"q_proj", "v_proj"}
    assert run.of("start")[0]["records"] == 16


@pytest.mark.slow
def test_raw_text_with_max_steps_warmup_and_accumulation(
    tiny_hf_home: Path, tmp_path: Path
) -> None:
    data = write_dataset(tmp_path / "raw.jsonl", "raw", copies=8)
    config = {
        **FAST,
        "batch_size": 2,
        "gradient_accumulation_steps": 2,
        "warmup_steps": 2,
        "max_seq_length": 8,
        "epochs": 3,
    }
    run = train(
        tmp_path,
        tiny_hf_home,
        base_model=LLAMA_ID,
        dataset_path=str(data),
        dataset_format="raw",
        config=config,
        max_steps=5,
    )
    assert run.proc.returncode == 0, run.proc.stderr[-2000:]
    # 16 records / batch 2 = 8 micro-batches / accumulation 2 = 4 steps per epoch; capped at 5.
    assert run.of("start")[0] == {"event": "start", "total_steps": 5, "epochs": 2, "records": 16}
    rates = [s["learning_rate"] for s in run.of("step")]
    assert rates[:3] == pytest.approx([1e-2 / 3, 2e-2 / 3, 1e-2])  # warm-up over 2 steps
    stats = json.loads((run.out / "training_stats.json").read_text())
    # Every record is longer than 8 tokens: truncated to max_seq_length.
    assert stats["tokens"] == 5 * 2 * 2 * 8
    assert [c["epoch"] for c in run.of("checkpoint")] == [1, 2]


@pytest.mark.slow
def test_missing_model_names_the_id_and_how_to_get_it(tiny_hf_home: Path, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data.jsonl", "alpaca")
    run = train(
        tmp_path,
        tiny_hf_home,
        base_model="unsloth/mistral-7b-bnb-4bit",
        dataset_path=str(data),
        dataset_format="alpaca",
        config=FAST,
    )
    assert run.proc.returncode == 1
    reason = run.of("error")[0]["reason"]
    assert "unsloth/mistral-7b-bnb-4bit" in reason
    assert "huggingface-cli download unsloth/mistral-7b-bnb-4bit" in reason
    assert "local model directory" in reason
    assert "Traceback" not in run.proc.stderr


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"config": {"lora_rank": "x"}}, "config.lora_rank must be an integer"),
        ({"config": {"learning_rate": -1}}, "config.learning_rate must be a number >= 0"),
        ({"config": {"epochs": 0}}, "config.epochs must be an integer >= 1"),
        ({"config": {"lr": 1e-3}}, "unknown hyper-parameter config.lr"),
        ({"dataset_format": "csv"}, "dataset_format must be one of alpaca, sharegpt, raw"),
        ({"base_model": ""}, "needs base_model"),
        ({"max_steps": 0}, "max_steps must be >= 1"),
    ],
)
def test_bad_config_is_one_clear_error(
    tmp_path: Path, change: dict[str, Any], expected: str
) -> None:
    fields: dict[str, Any] = {
        "base_model": LLAMA_ID,
        "dataset_path": str(tmp_path / "d.jsonl"),
        "dataset_format": "alpaca",
        **change,
    }
    run = train(tmp_path, tmp_path / "empty-hf-home", **fields)
    assert run.proc.returncode == 1
    assert [e["event"] for e in run.events] == ["error"]
    assert expected in run.events[0]["reason"]
    assert f"error: {run.events[0]['reason']}" in run.proc.stderr


def test_bad_record_names_line_and_field(tmp_path: Path, tiny_dataset: Callable[..., Path]) -> None:
    data = tiny_dataset("alpaca", copies=1)
    with data.open("a") as f:
        f.write(json.dumps({"instruction": "x", "output": 3}) + "\n")
    run = train(
        tmp_path,
        tmp_path / "empty-hf-home",
        base_model=LLAMA_ID,
        dataset_path=str(data),
        dataset_format="alpaca",
        config=FAST,
    )
    assert run.proc.returncode == 1
    assert run.of("error")[0]["reason"] == "dataset line 3: field 'output' must be a string"
    assert not any("loading unsloth" in e.get("message", "") for e in run.events)


@pytest.mark.slow
def test_sigterm_stops_training_promptly(tiny_hf_home: Path, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data.jsonl", "raw", copies=200)
    config = write_config(
        tmp_path,
        base_model=LLAMA_ID,
        dataset_path=str(data),
        dataset_format="raw",
        config={**FAST, "batch_size": 1, "epochs": 10},
    )
    progress = tmp_path / "out/progress.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-I", str(TRAINER), str(config)],
        env=trainer_env(tiny_hf_home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while '"step"' not in (progress.read_text() if progress.exists() else ""):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 143
    finally:
        proc.kill()
        proc.wait()
    assert not (tmp_path / "out/lora_model").exists()
