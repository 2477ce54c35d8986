"""Fixtures of the fine-tune tests: tiny models in a local Hugging Face cache, tiny datasets.

The whole folder is skipped when the `finetune` extra (torch, transformers, peft, tokenizers)
is not installed; the README's test command installs it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.finetune.tinymodels import install_in_subprocess, write_dataset

# Looked up, not imported: torch stays out of the pytest process (the libraries run in the
# subprocesses the tests start, as they do in the sandbox).
_MISSING = [
    name
    for name in ("torch", "transformers", "peft", "tokenizers")
    if importlib.util.find_spec(name) is None
]
if _MISSING:
    pytest.skip(
        f"the finetune extra is not installed ({', '.join(_MISSING)} missing): "
        'pip install -e ".[finetune]"',
        allow_module_level=True,
    )


@pytest.fixture(scope="session")
def tiny_hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An HF_HOME whose hub cache holds tiny Llama and Qwen2 models under the real ids
    (`unsloth/llama-3-8b-bnb-4bit`, `unsloth/Qwen2-7B-bnb-4bit`); readable by every uid."""
    home = tmp_path_factory.mktemp("hf-home")
    return install_in_subprocess(home)


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Callable[..., Path]:
    """`tiny_dataset("alpaca"|"sharegpt"|"raw", copies=4, jsonl=True)` → a dataset file."""

    def make(fmt: str, copies: int = 4, jsonl: bool = True) -> Path:
        suffix = "jsonl" if jsonl else "json"
        return write_dataset(tmp_path / f"{fmt}-{copies}.{suffix}", fmt, copies, jsonl)

    return make
