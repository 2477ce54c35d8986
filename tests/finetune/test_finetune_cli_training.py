"""`dumont finetune` and the `finetunes:` kind training for real: the CLI and `dumont apply` in
subprocesses against a control plane whose trainer runs on tiny models (tests/finetune/
tinymodels.py) from a temporary Hugging Face cache, offline. Skipped without the `finetune`
extra (tests/finetune/conftest.py).
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.apply.applykit import Project
from tests.finetune.tinymodels import QWEN2_ID, write_dataset
from tests.support import LocalServer, UserSession, cli_env, new_user, run_cli

pytestmark = pytest.mark.slow
LLAMA = "unsloth/llama-3-8b-bnb-4bit"
SMALL = ["--max-seq-length=256", "--batch-size=2", "--grad-accum=1"]


@pytest.fixture(scope="module")
def cli_train_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_hf_home: Path
) -> Iterator[LocalServer]:
    env = {"DUMONT_SERVER_HF_HOME": str(tiny_hf_home), "DUMONT_SERVER_TIME_SCALE": "1000"}
    server = LocalServer(tmp_path_factory.mktemp("ft-cli-train-server"), env=env).start()
    yield server
    server.stop()


@pytest.fixture
def trainer_user(cli_train_server: LocalServer) -> UserSession:
    return new_user(cli_train_server.url)


def test_create_waits_with_progress_then_downloads_the_adapter(
    trainer_user: UserSession, home: Path, tmp_path: Path
) -> None:
    env = cli_env(home, trainer_user.url, trainer_user.token)
    data = write_dataset(tmp_path / "train.jsonl", "alpaca", copies=4)
    args = ["finetune", "create", "demo", f"--model={LLAMA}", f"--dataset={data}"]
    args += ["--format=alpaca", "--epochs=2", "--lr=5e-3", "--lora-rank=8", "--lora-alpha=16"]
    done = run_cli([*args, *SMALL, "--wait"], env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    # The status line off a terminal: one line per status or step seen, with step/total and
    # loss (a quick run may end between two polls: the completed line carries them too).
    steps = [line for line in done.stderr.splitlines() if ", step " in line]
    assert steps and "/" in steps[-1] and ", loss " in steps[-1], done.stderr
    assert re.search(r"^output_model_path +/workspace/outputs/lora_model$", done.stdout, re.M)
    job_id = done.stderr.splitlines()[0].split()[2]

    target = tmp_path / "adapter"
    pulled = run_cli(["finetune", "download", job_id, "-o", str(target)], env, cwd=tmp_path)
    assert pulled.returncode == 0, pulled.stderr
    adapter = json.loads((target / "outputs" / "lora_model" / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (8, 16)
    stats = json.loads((target / "outputs" / "training_stats.json").read_text())
    assert stats["train_loss"] > 0

    with socket.socket() as probe:  # a free loopback port for the model server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    deploy = ["finetune", "deploy", job_id, "--gpu=RTX4090", "--max-price=50", f"--port={port}"]
    served = run_cli([*deploy, "-o", "json"], env, cwd=tmp_path)
    assert served.returncode == 0, served.stderr
    answer = json.loads(served.stdout)
    try:
        assert answer["endpoint_url"] == f"http://127.0.0.1:{port}/v1"
        assert answer["job_id"] == job_id and answer["success"] is True
    finally:
        trainer_user.client.instances.delete(answer["instance_id"], missing_ok=True)


def test_create_follow_streams_the_trainers_log(
    trainer_user: UserSession, home: Path, tmp_path: Path
) -> None:
    env = cli_env(home, trainer_user.url, trainer_user.token)
    data = write_dataset(tmp_path / "chat.jsonl", "sharegpt", copies=3)
    args = ["finetune", "create", "chat", f"--model={QWEN2_ID}", f"--dataset={data}", *SMALL]
    done = run_cli([*args, "--format=sharegpt", "--follow"], env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert done.stdout.strip(), "no log line was streamed"
    assert ": completed" in done.stderr.splitlines()[-1]
    job_id = done.stderr.splitlines()[0].split()[2]
    whole = run_cli(["finetune", "logs", job_id], env, cwd=tmp_path).stdout
    assert done.stdout.strip() == whole.strip()  # each line once, none lost at the end


def test_apply_trains_once_and_a_job_reads_its_output_model_path(
    trainer_user: UserSession, home: Path, tmp_path: Path
) -> None:
    project = Project(tmp_path / "work", home, trainer_user.url, trainer_user.token)
    data = write_dataset(project.folder / "train.jsonl", "alpaca", copies=3)
    project.write(
        f"""
        project: lab
        finetunes:
          chat:
            base_model: {LLAMA}
            dataset: train.jsonl
            config: {{epochs: 1, lora_rank: 8, max_seq_length: 256, batch_size: 2}}
            wait: completed
        jobs:
          use:
            command: echo "adapter at ${{finetune.chat.output_model_path}}"
            wait: completed
        """
    )
    applied = project("apply", "-y", timeout=300)
    assert "Apply complete" in applied.stdout
    state = project.state()["resources"]
    ft_id = state["finetune.chat"]["remote_id"]
    job = trainer_user.client.finetune.get(ft_id)
    assert job.status == "completed" and job.dataset_source == "upload"
    assert job.config["lora_rank"] == 8
    logs = trainer_user.client.jobs.logs(project.remote_id("job.use"))["logs"]
    assert "adapter at /workspace/outputs/lora_model" in logs

    assert "No changes." in project("plan").stdout  # run-once: completed and unchanged
    data.write_text(data.read_text() + data.read_text())
    changed = project("plan").stdout
    assert "spec changed (dataset changed); run_policy once keeps the finished run" in changed
    project("destroy", "-y", timeout=120)
    assert project.state()["resources"] == {}
    assert trainer_user.client.finetune.get(ft_id).status == "completed"  # outputs kept
