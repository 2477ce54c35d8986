"""What `dumont finetune create` decides offline: the dataset's source, ranges, presets, ETA."""

from __future__ import annotations

from pathlib import Path

import pytest

from dumont_plan.cli.finetune_input import (
    DatasetChoice,
    build_body,
    check_choice,
    check_ranges,
    classify_dataset,
    merge_preset,
)
from dumont_plan.cli.finetune_watch import Eta, clock, wait_text
from dumont_plan.errors import DumontError
from dumont_plan.wire_models import Finetune, FinetunePreset


def test_a_local_file_is_uploaded_first(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text("{}\n")
    assert classify_dataset(str(data)) == DatasetChoice("upload", str(data), data)


@pytest.mark.parametrize(
    ("value", "source", "path"),
    [
        ("https://example.org/data/train.jsonl", "url", "https://example.org/data/train.jsonl"),
        ("HTTP://example.org/x", "url", "HTTP://example.org/x"),
        (
            "/srv/datasets/u1/20261204_train.jsonl",
            "upload",
            "/srv/datasets/u1/20261204_train.jsonl",
        ),
        ("yahma/alpaca-cleaned", "huggingface", "yahma/alpaca-cleaned"),
        ("hf:org/data.v2", "huggingface", "org/data.v2"),
    ],
)
def test_the_source_is_decided_from_what_dataset_names(value: str, source: str, path: str) -> None:
    assert classify_dataset(value) == DatasetChoice(source, path)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("data/missing.jsonl", "finetune create: --dataset=data/missing.jsonl: no such file"),
        ("just-a-word", "finetune create: --dataset=just-a-word is not a file here, a URL or"),
        ("", "finetune create: --dataset is empty"),
    ],
)
def test_a_dataset_that_is_nothing_known_is_one_clear_error(value: str, message: str) -> None:
    with pytest.raises(DumontError) as caught:
        classify_dataset(value)
    assert str(caught.value).startswith(message)


def test_a_local_file_of_another_kind_is_refused_before_any_upload(tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_text("a,b\n")
    with pytest.raises(DumontError, match=r"only \.json and \.jsonl files can be uploaded"):
        classify_dataset(str(data))


def test_a_typo_gets_a_did_you_mean() -> None:
    with pytest.raises(DumontError) as caught:
        check_choice("sharegtp", ("alpaca", "sharegpt", "raw"), "--format", "finetune create")
    assert str(caught.value) == (
        "finetune create: --format=sharegtp is not one of alpaca, sharegpt, raw; "
        "did you mean 'sharegpt'? use one of: alpaca, sharegpt, raw"
    )


@pytest.mark.parametrize(
    ("config", "gpus", "message"),
    [
        ({"epochs": 11}, None, "--epochs=11 is out of range; use 1–10"),
        ({"learning_rate": 0.5}, None, "--lr=0.5 is out of range; use 1e-6–1e-2"),
        ({"lora_rank": 2}, None, "--lora-rank=2 is out of range; use 4–128"),
        ({"max_seq_length": 100}, None, "--max-seq-length=100 is out of range; use 256–65536"),
        ({}, 9, "--num-gpus=9 is out of range; use 1–8"),
    ],
)
def test_out_of_range_values_name_the_flag_and_the_range(
    config: dict[str, float], gpus: int | None, message: str
) -> None:
    with pytest.raises(DumontError) as caught:
        check_ranges(config, gpus, "finetune create")
    assert str(caught.value) == f"finetune create: {message}"


def test_the_hyper_parameters_are_nested_and_unset_ones_left_out() -> None:
    body = build_body(
        "demo",
        "unsloth/llama-3-8b-bnb-4bit",
        DatasetChoice("huggingface", "a/b"),
        {"dataset_format": "alpaca", "gpu_type": None, "num_gpus": 2},
        {"epochs": 3, "learning_rate": 2e-4, "lora_rank": None},
    )
    assert body == {
        "name": "demo",
        "base_model": "unsloth/llama-3-8b-bnb-4bit",
        "dataset_source": "huggingface",
        "dataset_path": "a/b",
        "dataset_format": "alpaca",
        "num_gpus": 2,
        "config": {"epochs": 3, "learning_rate": 2e-4},
    }


def test_explicit_flags_win_over_the_preset() -> None:
    presets = [FinetunePreset(name="chat", config={"epochs": 2, "lora_rank": 32})]
    merged = merge_preset(presets, "chat", {"epochs": 5, "lora_rank": None}, "finetune create")
    assert merged == {"epochs": 5, "lora_rank": 32}
    with pytest.raises(DumontError, match="--preset=caht is not one of chat; did you mean 'chat'"):
        merge_preset(presets, "caht", {}, "finetune create")


def test_the_wait_line_shows_step_loss_and_an_eta_from_the_observed_rate() -> None:
    now = [100.0]
    eta = Eta(now=lambda: now[0])
    job = Finetune(
        id="ft_1", name="demo", status="running", current_step=10, total_steps=50, loss=1.5
    )
    first = wait_text(job.model_copy(update={"progress_percent": 20.0}), eta)
    assert first == "ft_1 (demo): running, step 10/50 (20%), loss 1.5000"
    now[0] = 110.0  # 10 more steps in 10 s: 30 steps left take 30 s
    later = job.model_copy(update={"current_step": 20, "progress_percent": 40.0, "loss": 1.2})
    assert wait_text(later, eta) == "ft_1 (demo): running, step 20/50 (40%), loss 1.2000, ETA 0:30"
    assert clock(3725) == "1:02:05"
