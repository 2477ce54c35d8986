"""A fine-tune's local dataset: found beside the spec that names it, hashed, pinned."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dumont_plan.errors import SpecErrors
from dumont_plan.loader import load_stack
from dumont_plan.spec.finetune import FinetuneSpec, remote_dataset_source

RECORD = '{"instruction": "hi", "output": "hello"}\n'


def spec_with(dataset: str, extra: str = "") -> str:
    return (
        "project: lab\nfinetunes:\n  chat:\n    base_model: unsloth/llama-3-8b-bnb-4bit\n"
        f"    dataset: {dataset}\n{extra}"
    )


def finetune(path: Path, cwd: Path) -> FinetuneSpec:
    stack = load_stack([path], cwd, env={})
    spec = stack.resources["finetune.chat"].spec
    assert isinstance(spec, FinetuneSpec)
    return spec


def test_a_local_file_is_hashed_and_kept_relative_to_the_stack_root(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text(RECORD)
    (tmp_path / "dumont.yaml").write_text(spec_with("data/train.jsonl"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    spec = finetune(tmp_path / "dumont.yaml", elsewhere)  # run from another folder
    assert spec.dataset == "data/train.jsonl"
    assert spec.dataset_sha256 == hashlib.sha256(RECORD.encode()).hexdigest()


def test_a_second_spec_file_names_its_dataset_relative_to_itself(tmp_path: Path) -> None:
    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "train.jsonl").write_text(RECORD)
    (tmp_path / "dumont.yaml").write_text("project: lab\n")
    (tmp_path / "ml" / "tune.yaml").write_text(
        spec_with("train.jsonl").replace("project: lab\n", "")
    )
    stack = load_stack([tmp_path / "dumont.yaml", tmp_path / "ml" / "tune.yaml"], tmp_path, env={})
    spec = stack.resources["finetune.chat"].spec
    assert isinstance(spec, FinetuneSpec)
    assert spec.dataset == "ml/train.jsonl"  # relative to the stack's root


def test_an_edited_dataset_changes_the_stack_digest(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text(RECORD)
    (tmp_path / "dumont.yaml").write_text(spec_with("train.jsonl"))
    before = load_stack([tmp_path / "dumont.yaml"], tmp_path, env={}).digest()
    data.write_text(RECORD + RECORD)
    after = load_stack([tmp_path / "dumont.yaml"], tmp_path, env={}).digest()
    assert before != after


def test_a_pinned_hash_that_matches_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text(RECORD)
    digest = hashlib.sha256(RECORD.encode()).hexdigest()
    (tmp_path / "dumont.yaml").write_text(
        spec_with("train.jsonl", f'    dataset_sha256: "{digest}"\n')
    )
    assert finetune(tmp_path / "dumont.yaml", tmp_path).dataset_sha256 == digest


def test_remote_datasets_are_not_read_and_cannot_be_pinned(tmp_path: Path) -> None:
    (tmp_path / "dumont.yaml").write_text(spec_with("https://example.org/d.jsonl"))
    assert finetune(tmp_path / "dumont.yaml", tmp_path).dataset_sha256 is None
    (tmp_path / "dumont.yaml").write_text(
        spec_with("org/set", f'    dataset_sha256: "{"a" * 64}"\n')
    )
    with pytest.raises(SpecErrors, match="dataset_sha256` pins a local dataset file"):
        load_stack([tmp_path / "dumont.yaml"], tmp_path, env={})


@pytest.mark.parametrize(
    ("text", "source"),
    [
        ("https://e.org/x.jsonl", "url"),
        ("/srv/data/u1/train.jsonl", "upload"),
        ("org/set", "huggingface"),
        ("hf:org/set.v2", "huggingface"),
        ("data/train.jsonl", None),
        ("train.jsonl", None),
    ],
)
def test_which_datasets_are_remote(text: str, source: str | None) -> None:
    assert remote_dataset_source(text) == source
