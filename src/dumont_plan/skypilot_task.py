"""A fine-tune (or a job) as a SkyPilot task: the dict `sky.Task.from_yaml_config` reads.

Pure and standard-library only: `dumont finetune create --dry-run` prints it, and an executor
that launches on SkyPilot renders the same task. Nothing secret is written into a task: a
token is a key under `secrets:` with no value (SkyPilot fills it at launch from
`--secret HF_TOKEN`, which reads the launching shell's environment).

    task = render_finetune_task(body, local_dataset="data/train.jsonl")
    # {"name": "finetune-demo", "resources": {"accelerators": "A100:1", ...}, "run": ...}

The trainer is the local executor's (`server/finetune/trainer.py`, mounted at
`/opt/dumont/trainer.py`): it reads one JSON config file, written by the task's `run` (a
quoted heredoc, so the shell expands nothing in it), and loads everything offline. So `setup`
installs the `finetune` extra's packages and fetches what the run needs: the base model into
the Hugging Face cache, and a URL's or a Hugging Face dataset's records into
`/dataset/data.jsonl` (a local file is a `file_mounts` entry instead).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

DATASET_DIR = "/dataset"
OUTPUT_DIR = "/workspace/outputs"
CONFIG_FILE = "/workspace/dumont-finetune.json"
TRAINER_MOUNT = "/opt/dumont/trainer.py"
FETCHED_DATASET = f"{DATASET_DIR}/data.jsonl"
# The local executor's trainer, beside this module (a path only: nothing is imported).
TRAINER_SOURCE = Path(__file__).resolve().parent / "server" / "finetune" / "trainer.py"
DISK_SIZE_GB = 200  # contract §6.7: the SkyPilot backend's disk
SECRET_KEYS = ("HF_TOKEN",)  # what a hub download may need; never a value here
_HEREDOC = "DUMONT_FINETUNE_CONFIG_EOF"

# What the setup step installs when the installed package's `finetune` extra cannot be read
# (a source tree that was never installed): the extra's packages (pyproject.toml).
FINETUNE_PACKAGES = ("torch==2.13.0", "transformers", "peft", "safetensors", "tokenizers")

# Contract §6.6, the SkyPilot column: the names SkyPilot's catalogues use. Spaces are dropped
# first (`RTX 4090` -> `RTX4090`); anything not listed passes through.
SKY_ACCELERATORS = {
    "A100-40GB": "A100",
    "A100PCIE": "A100",
    "A100SXM4": "A100-80GB",
    "A10080GB": "A100-80GB",  # the local market's `A100 80GB`
    "H100-80GB": "H100",
    "H100SXM": "H100",
    "H100PCIE": "H100",
}


def sky_accelerator(gpu_type: str) -> str:
    """The SkyPilot accelerator name of a Dumont `gpu_type` (§6.6): `RTX 4090` -> `RTX4090`,
    `A100-40GB` -> `A100`, `H100-80GB` -> `H100`; others unchanged (spaces dropped)."""
    compact = "".join(gpu_type.split())
    return SKY_ACCELERATORS.get(compact.upper(), compact)


def task_name(prefix: str, name: str) -> str:
    """`<prefix>-<name>` in the characters SkyPilot accepts in names (lower case, `-`)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "task"
    return f"{prefix}-{slug}"[:63].rstrip("-")


def finetune_packages() -> list[str]:
    """The `finetune` extra's requirements of the installed dumont-plan (else the defaults)."""
    try:
        requires = metadata.requires("dumont-plan") or []
    except metadata.PackageNotFoundError:
        requires = []
    found = [
        spec.split(";", 1)[0].strip()
        for spec in requires
        if ";" in spec and re.search(r"""extra\s*==\s*["']finetune["']""", spec)
    ]
    return found or list(FINETUNE_PACKAGES)


def _pip_install(packages: Sequence[str]) -> str:
    return "pip install --quiet " + " ".join(shlex.quote(p) for p in packages)


def dataset_mount(dataset_path: str) -> str:
    """Where a dataset file is mounted on the task's machine: `/dataset/<its name>`."""
    return str(PurePosixPath(DATASET_DIR) / PurePosixPath(dataset_path).name)


# Setup steps that fetch inputs with huggingface_hub (a transformers dependency); HF_TOKEN,
# when the launch passes it as a secret, is read from the environment by huggingface_hub.
_FETCH_MODEL = "from huggingface_hub import snapshot_download; snapshot_download({model})"
_FETCH_URL = "import urllib.request; urllib.request.urlretrieve({url}, {target})"
_FETCH_HF_DATASET = (
    "import json, pathlib; from huggingface_hub import snapshot_download; "
    'root = pathlib.Path(snapshot_download({dataset}, repo_type="dataset")); '
    'out = open({target}, "w"); '
    "[out.write(line.rstrip(chr(10)) + chr(10)) "
    'for f in sorted(root.rglob("*.jsonl")) for line in f.open() if line.strip()]; '
    "[out.write(json.dumps(r) + chr(10)) "
    'for f in sorted(root.rglob("*.json")) for r in json.load(f.open())]'
)


def trainer_config(body: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """What the trainer reads (its config file): the create request's base model, format and
    nested hyper-parameters, the dataset where the task sees it, and where to write."""
    config = dict(body.get("config") or {})
    output_dir = str(config.pop("output_dir", None) or OUTPUT_DIR)
    seed = config.pop("seed", 3407)
    max_steps = config.pop("max_steps", None)
    return {
        "base_model": body.get("base_model"),
        "dataset_path": dataset,
        "dataset_format": body.get("dataset_format") or "alpaca",
        "config": config,
        "output_dir": output_dir,
        "progress_path": f"{output_dir}/progress.jsonl",
        "seed": seed,
        "max_steps": max_steps,
    }


def _python(code: str) -> str:
    return "python -c " + shlex.quote(code)


def render_finetune_task(
    body: Mapping[str, Any],
    *,
    local_dataset: str | None = None,
    trainer_source: str | None = None,
    use_spot: bool = True,
    disk_size: int = DISK_SIZE_GB,
    cloud: str | None = None,
    packages: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The SkyPilot task of a fine-tune whose create request is `body` (contract §6.3).

    `local_dataset`: a dataset file on the launching machine (or a server path from an
    upload), mounted at `/dataset/<name>`; without it `dataset_path` is a URL or a Hugging
    Face dataset id that the setup fetches. `trainer_source`: the trainer script mounted at
    `/opt/dumont/trainer.py` (default: the one installed beside this module).
    """
    gpu = sky_accelerator(str(body.get("gpu_type") or "A100"))
    num_gpus = int(body.get("num_gpus") or 1)
    resources: dict[str, Any] = {
        "accelerators": f"{gpu}:{num_gpus}",
        "use_spot": use_spot,
        "disk_size": disk_size,
    }
    if cloud:
        resources["cloud"] = cloud
    setup = [_pip_install(packages if packages is not None else finetune_packages())]
    model = str(body.get("base_model") or "")
    if model and not model.startswith("/"):
        setup.append(_python(_FETCH_MODEL.format(model=json.dumps(model))))
    file_mounts: dict[str, str] = {}
    source = str(body.get("dataset_source") or "")
    remote = str(body.get("dataset_path") or "")
    if local_dataset is not None:
        dataset = dataset_mount(local_dataset)
        file_mounts[dataset] = local_dataset
    else:
        dataset = FETCHED_DATASET
        setup.insert(1, f"mkdir -p {DATASET_DIR}")
        if source == "url":
            setup.append(
                _python(_FETCH_URL.format(url=json.dumps(remote), target=json.dumps(dataset)))
            )
        else:
            setup.append(
                _python(
                    _FETCH_HF_DATASET.format(dataset=json.dumps(remote), target=json.dumps(dataset))
                )
            )
    file_mounts[TRAINER_MOUNT] = trainer_source or str(TRAINER_SOURCE)
    config = trainer_config(body, dataset)
    run = "\n".join(
        [
            "set -e",
            f"mkdir -p {shlex.quote(config['output_dir'])}",
            f"cat > {CONFIG_FILE} <<'{_HEREDOC}'",
            json.dumps(config, sort_keys=True),
            _HEREDOC,
            f"python {TRAINER_MOUNT} {CONFIG_FILE}",
        ]
    )
    return {
        "name": task_name("finetune", str(body.get("name") or "")),
        "resources": resources,
        "file_mounts": file_mounts,
        "setup": "\n".join(setup) + "\n",
        "run": run + "\n",
        "envs": {"DUMONT_FINETUNE_CONFIG": CONFIG_FILE, "DUMONT_OUTPUT_DIR": config["output_dir"]},
        "secrets": dict.fromkeys(SECRET_KEYS),
    }


# A Hugging Face source: its repo, downloaded by the setup into `model/` of the task's workdir
# (`~/sky_workdir`, where setup and run start), where the command then runs.
_FETCH_HF_REPO = (
    "from huggingface_hub import snapshot_download; "
    'snapshot_download({repo}, revision={revision}, local_dir="model")'
)
_REQUIREMENTS = (
    "if [ -f {dir}requirements.txt ]; then pip install --quiet -r {dir}requirements.txt; fi"
)


def render_job_task(
    body: Mapping[str, Any],
    *,
    disk_size: int | None = None,
    envs: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The SkyPilot task of a job whose create request is `body` (contract §5.2): its GPU,
    spot choice and disk, `pip_packages` and `setup_script` as setup, `command` as run.
    `hf_token` is never copied: it becomes the `HF_TOKEN` secret key.

    Sources (§5.5's order: source, packages, setup script, command): `git` is the task's
    `workdir` (`{url, ref}`: SkyPilot clones it and runs setup and run inside it), its
    `requirements.txt` installed first; `huggingface` is downloaded by the setup into
    `model/`, where the command runs. `num_nodes` > 1 is SkyPilot's `num_nodes`."""
    gpu = sky_accelerator(str(body.get("gpu_type") or "RTX 4090"))
    resources: dict[str, Any] = {
        "accelerators": f"{gpu}:{int(body.get('num_gpus') or 1)}",
        "use_spot": bool(body.get("use_spot", True)),
        "disk_size": int(disk_size or body.get("disk_size") or 50),
    }
    if body.get("image"):
        resources["image_id"] = f"docker:{body['image']}"
    setup = []
    source = body.get("source")
    run_dir = ""
    if source == "git" and body.get("git_url"):
        setup.append(_REQUIREMENTS.format(dir=""))
    elif source == "huggingface" and body.get("hf_repo"):
        fetch = _FETCH_HF_REPO.format(
            repo=json.dumps(str(body["hf_repo"])),
            revision=json.dumps(str(body.get("hf_revision") or "main")),
        )
        setup += [_pip_install(["huggingface_hub"]), _python(fetch)]
        setup.append(_REQUIREMENTS.format(dir="model/"))
        run_dir = "model"
    packages = list(body.get("pip_packages") or [])
    if packages:
        setup.append(_pip_install(packages))
    if body.get("setup_script"):
        setup.append(str(body["setup_script"]))
    task: dict[str, Any] = {
        "name": task_name("job", str(body.get("name") or "")),
        "resources": resources,
    }
    if source == "git" and body.get("git_url"):
        workdir = {"url": str(body["git_url"])}
        if body.get("git_branch"):
            workdir["ref"] = str(body["git_branch"])
        task["workdir"] = workdir
    if int(body.get("num_nodes") or 1) > 1:
        task["num_nodes"] = int(body["num_nodes"])
    if setup:
        task["setup"] = "\n".join(setup) + "\n"
    command = str(body.get("command") or "")
    task["run"] = (f"cd {run_dir}\n" if run_dir else "") + command + "\n"
    if envs:
        task["envs"] = dict(envs)
    task["secrets"] = dict.fromkeys(SECRET_KEYS)
    return task
