"""The floor of the fine-tune benchmark: the same LoRA training loop as trainer.py, bare.

`python -I finetune_bare.py CONFIG.json RESULT.json` reads the trainer's config file, loads the
same model the same way (offline, fp32, LoRA on the same projections), tokenises the same
rendered texts and runs the same optimizer steps (AdamW, linear warm-up and decay, gradient
accumulation, shuffled micro-batches padded to their longest row) with nothing else: no
validation, no progress events, no log lines, no checkpoints, no stats file. It writes the loop's
wall and CPU time, steps and tokens to RESULT.json.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"
warnings.filterwarnings("ignore")


def texts_of(path: str, fmt: str, eos: str) -> list[str]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    if fmt == "raw":
        return [r["text"] for r in records]
    if fmt == "alpaca":
        out = []
        for r in records:
            parts = [f"### Instruction:\n{r['instruction']}"]
            if r.get("input", "").strip():
                parts.append(f"### Input:\n{r['input']}")
            parts.append(f"### Response:\n{r['output']}")
            out.append("\n\n".join(parts) + eos)
        return out
    raise SystemExit(f"the bare loop reads raw or alpaca, not {fmt}")


def main(config_path: str, result_path: str) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    job: dict[str, Any] = json.loads(Path(config_path).read_text(encoding="utf-8"))
    hp = job["config"]
    seed = job.get("seed") or 3407
    random.seed(seed)
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(job["base_model"])
    model = AutoModelForCausalLM.from_pretrained(job["base_model"], dtype=torch.float32)
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    targets = [
        p
        for p in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
        if p in names
    ]
    model = get_peft_model(
        model,
        LoraConfig(
            r=hp["lora_rank"],
            lora_alpha=hp["lora_alpha"],
            lora_dropout=0.0,
            target_modules=targets,
            task_type="CAUSAL_LM",
        ),
    )
    texts = texts_of(job["dataset_path"], job["dataset_format"], tokenizer.eos_token)
    ids = tokenizer(texts, truncation=True, max_length=hp["max_seq_length"])["input_ids"]
    bs, acc = hp["batch_size"], hp["gradient_accumulation_steps"]
    per_epoch = math.ceil(math.ceil(len(ids) / bs) / acc)
    total = min(per_epoch * hp["epochs"], job.get("max_steps") or 10**9)
    warm = hp["warmup_steps"]
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=hp["learning_rate"],
        weight_decay=hp["weight_decay"],
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / (warm + 1) if s < warm else max(0.0, (total - s) / max(1, total - warm))
        ),
    )
    pad = tokenizer.pad_token_id
    model.train()
    rng = random.Random(seed)
    step = tokens = 0
    last_loss = float("nan")
    start, start_cpu = time.monotonic(), time.process_time()
    while step < total:
        order = list(range(len(ids)))
        rng.shuffle(order)
        micro = []
        for i in range(0, len(order), bs):
            rows = [ids[j] for j in order[i : i + bs]]
            width = max(map(len, rows))
            x = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
            micro.append((x, mask, x.masked_fill(mask == 0, -100)))
        for g in range(0, len(micro), acc):
            if step >= total:
                break
            group = micro[g : g + acc]
            last_loss = 0.0
            for x, mask, labels in group:
                loss = model(input_ids=x, attention_mask=mask, labels=labels).loss
                (loss / len(group)).backward()
                tokens += int(mask.sum())
                last_loss += float(loss.detach()) / len(group)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
    runtime, cpu = time.monotonic() - start, time.process_time() - start_cpu
    result = {
        "runtime_seconds": runtime,
        "cpu_seconds": cpu,
        "steps": step,
        "tokens": tokens,
        "last_loss": last_loss,
    }
    Path(result_path).write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
