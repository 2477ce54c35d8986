"""Fine-tune: the trainer's throughput against the same loop bare, and create-to-first-step.

Both sides train the same tiny random Llama (2 layers, hidden 64: the tests' model, put into a
scratch Hugging Face cache under `unsloth/llama-3-8b-bnb-4bit`) on the same alpaca records with
the same hyper-parameters and seed, one thread each (OMP_NUM_THREADS=1), runs interleaved:
`trainer.py` (what the executor runs: validation, a progress event and a log line per step, its
checkpoint, its stats) against `benchmarks/finetune_bare.py` (the loop and nothing else). The
figure is tokens per CPU second over each side's own training loop, median of the rounds; both
must end on the same loss (the same seed, data and steps), which checks they did the same work.

Then, through a local control plane, a fine-tune is created over the API (dataset uploaded
first) and the clock runs from just before the POST to the moment the job shows current_step
>= 1; the baseline is the trainer started directly, from its process start to its first step
event (the same import, model load and first step, without the API, runner and sandbox).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import (
    REPO,
    Options,
    Row,
    benchmark,
    local_server,
    median,
    register_user,
    scratch_dir,
)

TRAINER = REPO / "src/dumont_plan/server/finetune/trainer.py"
BARE = Path(__file__).with_name("finetune_bare.py")
MODEL = "unsloth/llama-3-8b-bnb-4bit"
CONFIG: dict[str, Any] = {
    "lora_rank": 8,
    "lora_alpha": 16,
    "learning_rate": 1e-3,
    "epochs": 1,
    "batch_size": 4,
    "gradient_accumulation_steps": 2,
    "max_seq_length": 256,
    "warmup_steps": 2,
    "weight_decay": 0.01,
}


def env_for(hf_home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(hf_home),
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }


def run_trainer(work: Path, hf_home: Path, config: Path) -> dict[str, float]:
    """One trainer.py run: its loop's tokens/s and the seconds from start to its first step."""
    progress = work / "progress.jsonl"
    progress.unlink(missing_ok=True)
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-I", str(TRAINER), str(config)],
        env=env_for(hf_home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    first_step = None
    while proc.poll() is None:
        if first_step is None and '"step"' in (progress.read_text() if progress.exists() else ""):
            first_step = time.monotonic() - started
        time.sleep(0.01)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"trainer.py failed: {err[-1000:]}")
    stats = json.loads((work / "out/training_stats.json").read_text())
    return {
        "tokens_per_cpu_second": stats["tokens"] / stats["cpu_seconds"],
        "tokens_per_second": stats["tokens"] / stats["runtime_seconds"],
        "first_step": first_step if first_step is not None else float("nan"),
        "last_loss": stats["last_loss"],
        "steps": stats["steps"],
    }


def run_bare(work: Path, hf_home: Path, config: Path) -> dict[str, float]:
    result = work / "bare.json"
    done = subprocess.run(
        [sys.executable, "-I", str(BARE), str(config), str(result)],
        env=env_for(hf_home),
        capture_output=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"finetune_bare.py failed: {done.stderr.decode()[-1000:]}")
    figures = json.loads(result.read_text())
    return {
        "tokens_per_cpu_second": figures["tokens"] / figures["cpu_seconds"],
        "tokens_per_second": figures["tokens"] / figures["runtime_seconds"],
        "last_loss": figures["last_loss"],
    }


@contextlib.contextmanager
def environ(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def api_first_step(tmp: Path, hf_home: Path, dataset: Path, max_steps: int) -> float:
    """Seconds from just before POST /finetune/jobs to the job showing current_step >= 1."""
    with (
        environ(DUMONT_SERVER_HF_HOME=str(hf_home), OMP_NUM_THREADS="1"),
        local_server(tmp / "server") as server,
    ):
        token = register_user(server.url, "bench-ft@example.com")
        with httpx.Client(
            base_url=server.url + "/api/v1/finetune",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        ) as http:
            with dataset.open("rb") as f:
                uploaded = http.post("/jobs/upload-dataset", files={"file": ("d.jsonl", f)})
            uploaded.raise_for_status()
            body = {
                "name": "bench",
                "base_model": MODEL,
                "dataset_source": "upload",
                "dataset_path": uploaded.json()["dataset_path"],
                "dataset_format": "alpaca",
                "config": {**CONFIG, "max_steps": max_steps},
            }
            before = time.monotonic()
            created = http.post("/jobs", json=body)
            created.raise_for_status()
            job_id = created.json()["id"]
            deadline = before + 300
            while True:
                job = http.get(f"/jobs/{job_id}").json()
                if job["current_step"] >= 1:
                    return time.monotonic() - before
                if job["status"] in ("failed", "cancelled", "completed"):
                    raise RuntimeError(f"fine-tune ended {job['status']}: {job['error_message']}")
                if time.monotonic() > deadline:
                    raise RuntimeError("fine-tune showed no step in 300 s")
                time.sleep(0.02)


@benchmark("finetune")
def finetune_throughput(opts: Options) -> list[Row]:
    missing = [m for m in ("torch", "transformers", "peft") if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeError(
            f'the finetune extra is missing ({", ".join(missing)}): pip install -e ".[finetune]"'
        )
    from tests.finetune.tinymodels import install_in_subprocess, write_dataset

    rounds, max_steps = (2, 24) if opts.quick else (5, 60)
    with scratch_dir(opts, "finetune") as tmp:
        tmp.chmod(0o755)  # the sandboxed trainer (another uid) reads the model cache
        hf_home = install_in_subprocess(tmp / "hf-home", [MODEL])
        dataset = write_dataset(tmp / "data.jsonl", "alpaca", copies=2 * max_steps * 2)
        work = tmp / "direct"
        work.mkdir()
        config = work / "config.json"
        config.write_text(
            json.dumps(
                {
                    "base_model": MODEL,
                    "dataset_path": str(dataset),
                    "dataset_format": "alpaca",
                    "config": CONFIG,
                    "output_dir": str(work / "out"),
                    "progress_path": str(work / "progress.jsonl"),
                    "max_steps": max_steps,
                }
            )
        )
        trainer: list[dict[str, float]] = []
        bare: list[dict[str, float]] = []
        for _ in range(rounds):
            trainer.append(run_trainer(work, hf_home, config))
            bare.append(run_bare(work, hf_home, config))
        api = api_first_step(tmp, hf_home, dataset, max_steps=3)
    direct_first = median([t["first_step"] for t in trainer])
    losses = {round(r["last_loss"], 6) for r in trainer + bare}
    if len(losses) != 1:  # the same seed, data and steps: both loops must compute the same
        raise RuntimeError(f"trainer.py and the bare loop ended on different losses: {losses}")

    def runs(side: list[dict[str, float]], key: str) -> str:
        return ", ".join(f"{r[key]:.0f}" for r in side)

    setup = (
        f"{int(trainer[0]['steps'])} optimizer steps (batch 4 x accumulation 2, LoRA r 8 on the "
        f"7 projections, tiny Llama), median of {rounds}, interleaved, one thread each"
    )
    return [
        Row.ratio_row(
            "finetune: trainer.py throughput (CPU)",
            median([t["tokens_per_cpu_second"] for t in trainer]),
            median([b["tokens_per_cpu_second"] for b in bare]),
            "tokens/CPU-s",
            "the same loop, bare",
            min_ratio=0.9,
            note=(
                f"{setup}; both end on the same loss ({losses.pop():.6f}): the same work; "
                "tokens per CPU second of each side's training loop (the trainer's "
                "includes its checkpoint and per-step progress); trainer "
                f"{runs(trainer, 'tokens_per_cpu_second')}, bare "
                f"{runs(bare, 'tokens_per_cpu_second')}"
            ),
        ),
        Row.ratio_row(
            "finetune: trainer.py throughput (wall)",
            median([t["tokens_per_second"] for t in trainer]),
            median([b["tokens_per_second"] for b in bare]),
            "tokens/s",
            "the same loop, bare",
            note=(
                f"the same runs in wall time (noisy on shared cores): trainer "
                f"{runs(trainer, 'tokens_per_second')}, bare {runs(bare, 'tokens_per_second')}"
            ),
        ),
        Row.ratio_row(
            "finetune: create to first step (API)",
            api * 1000,
            direct_first * 1000,
            "ms",
            "trainer.py started directly",
            note=(
                "POST /finetune/jobs (dataset uploaded before) to GET showing current_step >= 1, "
                "one run, through the per-user queue, runner and sandbox; the baseline is the "
                "trainer's own process start to first step event (median of the runs above)"
            ),
        ),
    ]
