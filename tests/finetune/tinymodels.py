"""Tiny randomly initialised causal language models, put into a local Hugging Face cache.

The fine-tune tests never download anything: they build models of the real architectures
(Llama, Qwen2) with 2 layers, hidden size 64 and a byte-level BPE tokenizer trained on the fly
on a few sentences (a few hundred tokens), and save each one in the hub cache layout
(`HF_HOME/hub/models--org--name/snapshots/<rev>/…` plus `refs/main`) under the real model id.
With `HF_HUB_OFFLINE=1` and that `HF_HOME`, `from_pretrained("unsloth/llama-3-8b-bnb-4bit")`
then runs the real offline loading path and finds the tiny model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

LLAMA_ID = "unsloth/llama-3-8b-bnb-4bit"
QWEN2_ID = "unsloth/Qwen2-7B-bnb-4bit"
TINY_MODELS = (LLAMA_ID, QWEN2_ID)

# A fixed, made-up revision: the cache layout only needs refs/main to name a snapshot folder.
REVISION = "0" * 39 + "1"

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Translate the sentence into French. Le renard brun saute.",
    "What is the capital of France? The capital of France is Paris.",
    "Write a function that adds two numbers: def add(a, b): return a + b",
    "### Instruction:\n### Input:\n### Response:\n### Human: ### Assistant: ### System:",
    "Hello! How can I help you today? Tell me a joke about cats.",
    "Fine-tuning a language model with LoRA adapters on a small dataset.",
    "One two three four five six seven eight nine ten.",
]
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]


def train_tokenizer(vocab_size: int = 320) -> Any:
    """A byte-level BPE tokenizer trained on SENTENCES, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(SENTENCES * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=512,
    )


def _config(arch: str, tokenizer: Any) -> Any:
    import transformers

    common: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "tie_word_embeddings": False,
    }
    if arch == "llama":
        return transformers.LlamaConfig(**common)
    if arch == "qwen2":
        return transformers.Qwen2Config(**common)
    raise ValueError(f"unknown tiny architecture {arch!r}")


def save_tiny_model(directory: Path, arch: str, seed: int = 0) -> Path:
    """Write a tiny model of `arch` (llama|qwen2) and its tokenizer into `directory`."""
    import torch
    import transformers

    torch.manual_seed(seed)
    tokenizer = train_tokenizer()
    config = _config(arch, tokenizer)
    model_cls = transformers.LlamaForCausalLM if arch == "llama" else transformers.Qwen2ForCausalLM
    model = model_cls(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def cache_dir_for(hf_home: Path, model_id: str) -> Path:
    """The snapshot folder of `model_id` in the hub cache under `hf_home`."""
    repo = hf_home / "hub" / ("models--" + model_id.replace("/", "--"))
    return repo / "snapshots" / REVISION


def install_tiny_models(hf_home: Path, model_ids: Iterable[str] = TINY_MODELS) -> Path:
    """Put a tiny model under each id (Qwen2 for ids naming Qwen, Llama otherwise)."""
    for model_id in model_ids:
        arch = "qwen2" if "qwen" in model_id.lower() else "llama"
        snapshot = cache_dir_for(hf_home, model_id)
        save_tiny_model(snapshot, arch)
        refs = snapshot.parents[1] / "refs"
        refs.mkdir(parents=True, exist_ok=True)
        (refs / "main").write_text(REVISION)
    # Readable by every uid (safetensors writes 0600): the sandboxed trainer runs as another.
    for root, _dirs, files in os.walk(hf_home):
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    return hf_home


def install_in_subprocess(hf_home: Path, model_ids: Iterable[str] = TINY_MODELS) -> Path:
    """install_tiny_models in a child process: torch never loads into the caller (pytest)."""
    code = (
        "import sys; from pathlib import Path; from tests.finetune.tinymodels import "
        "install_tiny_models; install_tiny_models(Path(sys.argv[1]), sys.argv[2:])"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env["HF_HOME"] = str(hf_home)
    subprocess.run(
        [sys.executable, "-c", code, str(hf_home), *model_ids],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return hf_home


ALPACA = [
    {"instruction": "Say hello.", "input": "", "output": "Hello! How can I help you today?"},
    {"instruction": "Count.", "input": "to five", "output": "One two three four five."},
]
SHAREGPT = [
    {
        "conversations": [
            {"from": "system", "value": "You are helpful."},
            {"from": "human", "value": "Tell me a joke about cats."},
            {"from": "gpt", "value": "The quick brown fox jumps over the lazy dog."},
        ]
    },
    {
        "conversations": [
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "The capital of France is Paris."},
        ]
    },
]
RAW = [
    {"text": "One two three four five six seven eight nine ten."},
    {"text": "The quick brown fox jumps over the lazy dog."},
]
RECORDS = {"alpaca": ALPACA, "sharegpt": SHAREGPT, "raw": RAW}


def write_dataset(path: Path, fmt: str, copies: int = 4, jsonl: bool = True) -> Path:
    """A tiny, repetitive dataset of `fmt` (alpaca|sharegpt|raw): `copies` × its records."""
    records = RECORDS[fmt] * copies
    if jsonl:
        path.write_text("".join(json.dumps(record) + "\n" for record in records))
    else:
        path.write_text(json.dumps(records))
    return path
