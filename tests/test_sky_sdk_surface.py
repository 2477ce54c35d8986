"""The SkyPilot SDK functions the `skypilot` executor calls exist in the real `sky` package with
the parameters it passes, the test fake (tests/server/fake_sky.py) has the same parameters, the
status table covers every real ManagedJobStatus, and SkyPilot's loader accepts the job tasks
the executor renders (git workdir, Hugging Face source, several nodes, envs, secrets; a
fine-tune with its dataset, trainer and output location mounts).

Runs SkyPilot in `.venv-skypilot` like tests/test_skypilot_task.py (its pins conflict with
the dev tools)."""

from __future__ import annotations

import inspect
import json
import subprocess
from pathlib import Path
from typing import Any

from dumont_plan.server.provider import sky_finetunes, sky_jobs, sky_outputs
from dumont_plan.skypilot_task import TRAINER_SOURCE
from tests.server import fake_sky
from tests.test_skypilot_task import sky_python

# What the executor calls: function -> the keyword arguments it passes (besides positionals).
CALLS: dict[str, set[str]] = {
    "jobs.launch": {"name"},
    "jobs.queue": {"refresh", "job_ids"},
    "jobs.cancel": {"job_ids"},
    "jobs.tail_logs": {"job_id", "follow", "output_stream"},
    "check.check": {"quiet"},
    "get": set(),
    "Task.from_yaml_config": set(),
    "Task.update_secrets": set(),
}

SURFACE = """
import importlib, inspect, json, sys
import sky
import sky.check
out = {"params": {}, "statuses": [s.value for s in sky.jobs.ManagedJobStatus], "tasks": []}
for dotted in json.loads(sys.argv[1]):
    obj = sky
    for part in dotted.split("."):
        obj = getattr(obj, part)
    out["params"][dotted] = list(inspect.signature(obj).parameters)
for config in json.load(sys.stdin):
    try:
        task = sky.Task.from_yaml_config(config)
        (resources,) = task.resources
        out["tasks"].append({"num_nodes": task.num_nodes, "workdir": task.workdir,
                             "envs": dict(task.envs), "run": task.run,
                             "file_mounts": task.file_mounts or {},
                             "storage": {k: [v.source, v.mode.value]
                                         for k, v in (task.storage_mounts or {}).items()},
                             "accelerators": resources.accelerators,
                             "use_spot": resources.use_spot})
    except Exception as exc:
        out["tasks"].append({"error": f"{type(exc).__name__}: {exc}"})
print(json.dumps(out))
"""

TASKS = [
    sky_jobs.render(
        "job_1",
        {
            "name": "g",
            "source": "git",
            "git_url": "https://git.example.com/team/repo.git",
            "git_branch": "dev",
            "command": "python main.py",
            "num_nodes": 2,
        },
        {},
    )[0],
    sky_jobs.render(
        "job_2",
        {"name": "h", "source": "huggingface", "hf_repo": "org/model", "command": "python x.py"},
        {"HF_TOKEN": "hf_value"},
    )[0],
]


FINETUNE = {
    "id": "abcd1234",
    "name": "Demo Tune",
    "base_model": "unsloth/llama-3-8b-bnb-4bit",
    "dataset_source": "upload",
    "dataset_path": "/srv/datasets/1/train.jsonl",
    "dataset_format": "alpaca",
    "gpu_type": "A100-80GB",
    "num_gpus": 2,
    "config": json.dumps({"epochs": 2, "lora_rank": 32, "output_dir": "/workspace/outputs"}),
}
BUCKET = "s3://my-bucket/dumont"


def real_surface(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    done = subprocess.run(
        [sky_python(), "-c", SURFACE, json.dumps(sorted(CALLS))],
        input=json.dumps(tasks),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def fake_params(dotted: str) -> list[str]:
    obj: Any = fake_sky
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return [p for p in inspect.signature(obj).parameters if p not in ("self", "cls")]


def test_the_sdk_calls_match_the_real_package_and_the_fake(tmp_path: Path) -> None:
    dataset = tmp_path / "dataset.jsonl"
    dataset.write_text('{"instruction": "a", "output": "b"}\n')
    finetune = sky_finetunes.task_for(FINETUNE, str(dataset), False, f"{BUCKET}/finetune-abcd1234")
    job = {**TASKS[0], "file_mounts": sky_outputs.mounts(f"{BUCKET}/job-1", ["/workspace/out"])}
    real = real_surface([*TASKS, finetune, job])
    for dotted, keywords in CALLS.items():
        params = [p for p in real["params"][dotted] if p not in ("self", "cls")]
        assert keywords <= set(params), f"sky.{dotted} lacks {keywords - set(params)}"
        assert fake_params(dotted) == params, f"the fake's {dotted} differs from SkyPilot's"
    assert set(real["statuses"]) == set(sky_jobs.JOB_STATUS)
    git, hf, ft, job = real["tasks"]
    assert "error" not in ft and "error" not in job, (ft, job)
    assert {k: git[k] for k in ("num_nodes", "workdir", "envs", "run")} == {
        "num_nodes": 2,
        "workdir": {"url": "https://git.example.com/team/repo.git", "ref": "dev"},
        "envs": {"DUMONT_JOB_ID": "job_1"},
        "run": "python main.py\n",
    }
    assert hf["run"] == "cd model\npython x.py\n" and hf["num_nodes"] == 1
    # The fine-tune: its files shipped, its outputs a bucket location SkyPilot mounts.
    assert ft["accelerators"] == {"A100-80GB": 2} and ft["use_spot"] is False
    assert ft["file_mounts"] == {
        "/dataset/dataset.jsonl": str(dataset),
        "/opt/dumont/trainer.py": str(TRAINER_SOURCE),
    }
    assert ft["storage"] == {
        "/workspace/outputs": [f"{BUCKET}/finetune-abcd1234/outputs", "MOUNT_CACHED"]
    }
    assert job["storage"] == {"/workspace/out": [f"{BUCKET}/job-1/out", "MOUNT_CACHED"]}
