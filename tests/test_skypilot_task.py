"""SkyPilot tasks rendered from fine-tunes and jobs: exact structure, and SkyPilot's own loader
(`sky.Task.from_yaml_config`) accepts each one.

SkyPilot pins click<8.2 and uvicorn<0.36, which the dev tools' versions conflict with, so
./scripts/test installs it (`.[skypilot]`) in its own venv, `.venv-skypilot`; the loader runs
there in one subprocess for all the tasks. Where `sky` imports in this interpreter, that is used.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dumont_plan.cli.app import run as run_dumont
from dumont_plan.skypilot_task import (
    render_finetune_task,
    render_job_task,
    sky_accelerator,
    task_name,
)

ROOT = Path(__file__).resolve().parents[1]
SKY_VENV_PYTHON = ROOT / ".venv-skypilot" / "bin" / "python"

BODY: dict[str, Any] = {
    "name": "Demo Llama",
    "base_model": "unsloth/llama-3-8b-bnb-4bit",
    "dataset_source": "upload",
    "dataset_path": "/srv/datasets/u1/20261204_train.jsonl",
    "dataset_format": "alpaca",
    "gpu_type": "A100-80GB",
    "num_gpus": 2,
    "config": {"epochs": 3, "learning_rate": 2e-4, "lora_rank": 32, "lora_alpha": 64},
}
PACKAGES = ["torch==2.13.0", "peft"]

# The loader's check: every task (a JSON list on stdin) read by SkyPilot; its view back.
CHECK = """
import copy, json, sys
import sky
out = []
for config in json.load(sys.stdin):
    try:
        task = sky.Task.from_yaml_config(copy.deepcopy(config))
    except Exception as exc:
        out.append({"error": f"{type(exc).__name__}: {exc}"})
        continue
    (resources,) = task.resources
    out.append({
        "name": task.name,
        "accelerators": resources.accelerators,
        "use_spot": resources.use_spot,
        "disk_size": resources.disk_size,
        "file_mounts": task.file_mounts,
        "envs": task.envs,
        "secrets": sorted(task.secrets),
        "run": task.run,
        "setup": task.setup,
    })
print(json.dumps(out))
"""


def sky_python() -> str:
    if importlib.util.find_spec("sky") is not None:
        return sys.executable
    if SKY_VENV_PYTHON.exists():
        return str(SKY_VENV_PYTHON)
    pytest.skip("SkyPilot is not installed (./scripts/test installs it in .venv-skypilot)")


def sky_load(tasks: list[dict[str, Any]], home: Path) -> list[dict[str, Any]]:
    """What SkyPilot's own loader reads from each task, or `{"error": ...}` where it refuses."""
    done = subprocess.run(
        [sky_python(), "-c", CHECK],
        input=json.dumps(tasks),
        capture_output=True,
        text=True,
        timeout=120,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ------------------------------------------------------------------------------- pure render


def python_snippets(setup: str) -> list[str]:
    """The code of each `python -c CODE` line of a setup script."""
    found = []
    for line in setup.splitlines():
        words = shlex.split(line)
        if words[:2] == ["python", "-c"]:
            found.append(words[2])
    return found


def test_a_finetune_renders_resources_mounts_setup_run_envs_and_secret_keys() -> None:
    task = render_finetune_task(
        BODY, local_dataset="/home/u/train.jsonl", trainer_source="/x/trainer.py", packages=PACKAGES
    )
    assert list(task) == ["name", "resources", "file_mounts", "setup", "run", "envs", "secrets"]
    assert task["name"] == "finetune-demo-llama"
    assert task["resources"] == {"accelerators": "A100-80GB:2", "use_spot": True, "disk_size": 200}
    assert task["file_mounts"] == {
        "/dataset/train.jsonl": "/home/u/train.jsonl",
        "/opt/dumont/trainer.py": "/x/trainer.py",
    }
    setup = task["setup"].splitlines()
    assert setup[0] == "pip install --quiet torch==2.13.0 peft"
    (fetch,) = python_snippets(task["setup"])  # the base model into the HF cache
    assert fetch == (
        "from huggingface_hub import snapshot_download; "
        'snapshot_download("unsloth/llama-3-8b-bnb-4bit")'
    )
    assert task["envs"] == {
        "DUMONT_FINETUNE_CONFIG": "/workspace/dumont-finetune.json",
        "DUMONT_OUTPUT_DIR": "/workspace/outputs",
    }
    assert task["secrets"] == {"HF_TOKEN": None}
    lines = task["run"].splitlines()
    assert lines[0] == "set -e"
    assert lines[-1] == "python /opt/dumont/trainer.py /workspace/dumont-finetune.json"
    assert json.loads(lines[3]) == {
        "base_model": "unsloth/llama-3-8b-bnb-4bit",
        "dataset_path": "/dataset/train.jsonl",
        "dataset_format": "alpaca",
        "config": {"epochs": 3, "learning_rate": 2e-4, "lora_rank": 32, "lora_alpha": 64},
        "output_dir": "/workspace/outputs",
        "progress_path": "/workspace/outputs/progress.jsonl",
        "seed": 3407,
        "max_steps": None,
    }


def test_the_default_trainer_is_the_local_executors() -> None:
    task = render_finetune_task(BODY, local_dataset="/d/t.jsonl", packages=PACKAGES)
    mounted = Path(task["file_mounts"]["/opt/dumont/trainer.py"])
    assert mounted.is_file() and mounted.name == "trainer.py"
    assert "LoRA fine-tune" in mounted.read_text()


def test_a_hub_or_url_dataset_is_fetched_by_the_setup_not_mounted() -> None:
    body = {**BODY, "dataset_source": "huggingface", "dataset_path": "yahma/alpaca-cleaned"}
    task = render_finetune_task(body, packages=PACKAGES, trainer_source="/x/trainer.py")
    assert task["file_mounts"] == {"/opt/dumont/trainer.py": "/x/trainer.py"}
    snippets = python_snippets(task["setup"])
    assert '"yahma/alpaca-cleaned", repo_type="dataset"' in snippets[1]
    assert '"dataset_path": "/dataset/data.jsonl"' in task["run"]
    url = {**BODY, "dataset_source": "url", "dataset_path": "https://e.org/it's.jsonl"}
    snippets = python_snippets(render_finetune_task(url, packages=PACKAGES)["setup"])
    assert snippets[1] == (
        'import urllib.request; urllib.request.urlretrieve("https://e.org/it\'s.jsonl", '
        '"/dataset/data.jsonl")'
    )
    for code in snippets:
        compile(code, "setup", "exec")  # each one is valid Python


def test_no_secret_value_is_ever_in_a_task() -> None:
    job = render_job_task(
        {"name": "j", "command": "python x.py", "hf_token": "hf_s3cr3t_value", "hf_repo": "a/b"}
    )
    assert "hf_s3cr3t_value" not in json.dumps(job)
    assert job["secrets"] == {"HF_TOKEN": None}


@pytest.mark.parametrize(
    ("gpu", "sky"),
    [
        ("A100", "A100"),
        ("A100-40GB", "A100"),
        ("A100-80GB", "A100-80GB"),
        ("H100", "H100"),
        ("H100-80GB", "H100"),
        ("RTX4090", "RTX4090"),
        ("RTX 4090", "RTX4090"),
        ("RTX3060", "RTX3060"),
        ("L40S", "L40S"),
        ("T4", "T4"),
        ("Some New GPU", "SomeNewGPU"),
    ],
)
def test_gpu_names_follow_the_contracts_skypilot_column(gpu: str, sky: str) -> None:
    assert sky_accelerator(gpu) == sky


def test_task_names_keep_to_skypilots_characters() -> None:
    assert task_name("finetune", "My Run #2 (test)") == "finetune-my-run-2-test"
    assert task_name("finetune", "***") == "finetune-task"
    assert len(task_name("job", "x" * 200)) <= 63


def test_a_job_renders_its_gpu_spot_disk_setup_and_command() -> None:
    task = render_job_task(
        {
            "name": "train",
            "command": "python train.py",
            "gpu_type": "RTX 4090",
            "num_gpus": 1,
            "use_spot": False,
            "disk_size": 80,
            "pip_packages": ["numpy", "torch==2.13.0"],
            "setup_script": "echo ready",
            "image": "pytorch/pytorch:latest",
        }
    )
    assert task == {
        "name": "job-train",
        "resources": {
            "accelerators": "RTX4090:1",
            "use_spot": False,
            "disk_size": 80,
            "image_id": "docker:pytorch/pytorch:latest",
        },
        "setup": "pip install --quiet numpy torch==2.13.0\necho ready\n",
        "run": "python train.py\n",
        "secrets": {"HF_TOKEN": None},
    }


# ------------------------------------------------------------------ SkyPilot's own loader


def dry_run_task(tmp: Path) -> dict[str, Any]:
    """`dumont finetune create … --dry-run --output json`, in-process; no server is called
    (DUMONT_API_URL names a port nothing listens on)."""
    data = tmp / "train.jsonl"
    data.write_text('{"instruction": "hi", "output": "hello"}\n')
    args = [
        "finetune",
        "create",
        "demo",
        "--model=unsloth/Qwen2-7B-bnb-4bit",
        f"--dataset={data}",
        "--format=alpaca",
        "--gpu=A100",
        "--epochs=3",
        "--lr=2e-4",
        "--lora-rank=8",
        "--dry-run",
        "--output",
        "json",
    ]
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setenv("DUMONT_API_URL", "http://127.0.0.1:9")
        assert run_dumont(args) == 0
    task: dict[str, Any] = json.loads(out.getvalue())
    return task


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Any]]:
    """Each task by name, with what SkyPilot read from it: one loader process for all."""
    tmp = tmp_path_factory.mktemp("sky")
    tasks = {
        "upload": render_finetune_task(
            BODY, local_dataset=str(tmp / "train.jsonl"), packages=PACKAGES
        ),
        "url": render_finetune_task(
            {**BODY, "dataset_source": "url", "dataset_path": "https://e.org/d.jsonl"},
            packages=PACKAGES,
            use_spot=False,
        ),
        "rtx": render_finetune_task({**BODY, "gpu_type": "RTX 4090", "num_gpus": 1}),
        "job": render_job_task({"name": "j", "command": "echo hi", "gpu_type": "H100-80GB"}),
        "cli": dry_run_task(tmp),
        "bogus": {**render_finetune_task(BODY, packages=PACKAGES), "bogus_key": 2},
    }
    views = sky_load(list(tasks.values()), tmp)
    return {name: (task, view) for (name, task), view in zip(tasks.items(), views, strict=True)}


def test_skypilot_accepts_every_rendered_task(loaded: dict[str, tuple[Any, Any]]) -> None:
    for name, (_, view) in loaded.items():
        assert name == "bogus" or "error" not in view, (name, view)
    task, first = loaded["upload"]
    assert first["name"] == "finetune-demo-llama"
    assert first["accelerators"] == {"A100-80GB": 2}
    assert first["use_spot"] is True
    assert first["disk_size"] == 200
    assert first["file_mounts"] == task["file_mounts"]
    assert first["envs"]["DUMONT_OUTPUT_DIR"] == "/workspace/outputs"
    assert first["secrets"] == []  # a key without a value: filled at launch by --secret
    assert first["run"] == task["run"]
    assert loaded["url"][1]["use_spot"] is False
    assert loaded["rtx"][1]["accelerators"] == {"RTX4090": 1}
    assert loaded["job"][1]["accelerators"] == {"H100": 1}


def test_skypilot_refuses_a_task_with_an_unknown_key(loaded: dict[str, tuple[Any, Any]]) -> None:
    """The check above can fail: SkyPilot's schema rejects what it does not know."""
    error = loaded["bogus"][1]["error"]
    assert error.startswith("InvalidSkyPilotConfigError: Invalid task YAML")
    assert "bogus_key" in error


def test_the_cli_dry_run_prints_a_task_skypilot_accepts(
    loaded: dict[str, tuple[Any, Any]],
) -> None:
    task, view = loaded["cli"]
    assert task["resources"]["accelerators"] == "A100:1"
    assert task["file_mounts"]["/dataset/train.jsonl"].endswith("/train.jsonl")
    assert view["accelerators"] == {"A100": 1}
    assert '"lora_rank": 8' in view["run"]
    assert '"base_model": "unsloth/Qwen2-7B-bnb-4bit"' in view["run"]
