"""The SkyPilot SDK functions the `skypilot` executor calls exist in the real `sky` package with
the parameters it passes, the test fake (tests/server/fake_sky.py) has the same parameters, the
status table covers every real ManagedJobStatus, and SkyPilot's loader accepts the job tasks
the executor renders (git workdir, Hugging Face source, several nodes, envs, secrets).

Runs SkyPilot in `.venv-skypilot` like tests/test_skypilot_task.py (its pins conflict with
the dev tools)."""

from __future__ import annotations

import inspect
import json
import subprocess
from typing import Any

from dumont_plan.server.provider import sky_jobs
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
        out["tasks"].append({"num_nodes": task.num_nodes, "workdir": task.workdir,
                             "envs": dict(task.envs), "run": task.run})
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


def real_surface() -> dict[str, Any]:
    done = subprocess.run(
        [sky_python(), "-c", SURFACE, json.dumps(sorted(CALLS))],
        input=json.dumps(TASKS),
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


def test_the_sdk_calls_match_the_real_package_and_the_fake() -> None:
    real = real_surface()
    for dotted, keywords in CALLS.items():
        params = [p for p in real["params"][dotted] if p not in ("self", "cls")]
        assert keywords <= set(params), f"sky.{dotted} lacks {keywords - set(params)}"
        assert fake_params(dotted) == params, f"the fake's {dotted} differs from SkyPilot's"
    assert set(real["statuses"]) == set(sky_jobs.JOB_STATUS)
    git, hf = real["tasks"]
    assert git == {
        "num_nodes": 2,
        "workdir": {"url": "https://git.example.com/team/repo.git", "ref": "dev"},
        "envs": {"DUMONT_JOB_ID": "job_1"},
        "run": "python main.py\n",
    }
    assert hf["run"] == "cd model\npython x.py\n" and hf["num_nodes"] == 1
