"""The fine-tune API over a real control plane whose local executor trains for real: the trainer
(`server/finetune/trainer.py`) in a sandbox, on the tiny models of `tinymodels.py` in a temporary
Hugging Face cache under the real ids, offline (the folder is skipped without the `finetune`
extra). The API's own checks, which need no trainer, are in tests/server/finetune.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from dumont_plan.server.provider.finetunes import LOST_WHILE_DOWN
from dumont_plan.server.provider.sandbox import pid_alive, tagged_pids
from tests.finetune.tinymodels import QWEN2_ID
from tests.server.finetune.ftsupport import (
    ALPACA,
    FT,
    LLAMA,
    SHAREGPT,
    create_from,
    download,
    get,
    logs,
    wait_finished,
    wait_until,
)
from tests.support import LocalServer, UserSession, new_user

pytestmark = pytest.mark.slow
SMALL = {"max_seq_length": 256, "batch_size": 2, "gradient_accumulation_steps": 1}
# Enough steps that a test sees the trainer at work before it ends.
LONG = {**SMALL, "batch_size": 1, "epochs": 10, "max_steps": 400}


def train_env(tiny_hf_home: Path) -> dict[str, str]:
    return {"DUMONT_SERVER_HF_HOME": str(tiny_hf_home), "DUMONT_SERVER_TIME_SCALE": "1000"}


@pytest.fixture(scope="session")
def train_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_hf_home: Path
) -> Iterator[LocalServer]:
    srv = LocalServer(tmp_path_factory.mktemp("ft-train-server"), env=train_env(tiny_hf_home))
    yield srv.start()
    srv.stop()


@pytest.fixture
def trainee(train_server: LocalServer) -> UserSession:
    return new_user(train_server.url)


def progress_events(user: UserSession, job_id: str) -> list[dict[str, object]]:
    answer = download(user, f"{FT}/jobs/{job_id}/outputs", path="outputs/progress.jsonl")
    assert answer.status_code == 200, answer.text
    return [json.loads(line) for line in answer.text.splitlines()]


def test_create_with_llama_3_8b_alpaca_trains_with_the_lora_configuration(
    trainee: UserSession, make_user: Callable[[], UserSession], train_server: LocalServer
) -> None:
    config = {**SMALL, "lora_rank": 8, "lora_alpha": 16, "epochs": 2, "learning_rate": 5e-3}
    job = create_from(trainee, ALPACA * 4, base_model=LLAMA, config=config)
    done = wait_finished(trainee, job["id"])
    assert done["status"] == "completed", done
    assert done["output_model_path"] == "/workspace/outputs/lora_model"
    assert done["current_step"] == done["total_steps"] > 0
    assert (done["progress_percent"], done["current_epoch"]) == (100.0, 2)
    assert done["loss"] is not None and done["error_message"] is None
    assert done["started_at"] and done["completed_at"]

    listed = download(trainee, f"{FT}/jobs/{job['id']}/outputs").json()["outputs"]
    paths = {o["path"] for o in listed}
    assert {"outputs/lora_model/adapter_config.json", "outputs/training_stats.json"} <= paths
    assert any(p.startswith("outputs/checkpoint-epoch-1/") for p in paths)
    adapter = download(
        trainee, f"{FT}/jobs/{job['id']}/outputs", path="outputs/lora_model/adapter_config.json"
    ).json()
    assert (adapter["r"], adapter["lora_alpha"]) == (8, 16)
    steps = [e for e in progress_events(trainee, job["id"]) if e["event"] == "step"]
    assert len(steps) == done["total_steps"]
    assert steps[-1]["loss"] < steps[0]["loss"]  # type: ignore[operator]

    archive = download(trainee, f"{FT}/jobs/{job['id']}/outputs", archive="tar.gz")
    assert archive.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        names = tar.getnames()
    assert f"finetune-{job['id']}/outputs/lora_model/adapter_config.json" in names
    # The temporary archive is removed once the answer is sent (a task after the response):
    # wait for it to go rather than racing it.
    box = train_server.data_dir / "sandboxes" / "finetunes" / job["id"]
    deadline = time.monotonic() + 10
    while list(box.glob(".arch*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not list(box.glob(".arch*"))

    other = new_user(trainee.url)
    for params in ({}, {"path": "outputs/lora_model/adapter_config.json"}, {"archive": "tar.gz"}):
        assert download(other, f"{FT}/jobs/{job['id']}/outputs", **params).status_code == 404


def test_create_with_qwen_2_7b_sharegpt(trainee: UserSession) -> None:
    job = create_from(trainee, SHAREGPT * 3, base_model=QWEN2_ID, config=SMALL)
    assert job["dataset_format"] == "sharegpt"
    done = wait_finished(trainee, job["id"])
    assert done["status"] == "completed", done
    assert done["total_steps"] > 0 and done["output_model_path"]


def test_logs_and_progress_move_while_training(trainee: UserSession) -> None:
    job = create_from(trainee, ALPACA * 25, config=LONG)
    seen = wait_until(
        trainee,
        job["id"],
        lambda j: j["status"] == "running" and j["current_step"] >= 2,
        what="two steps",
    )
    assert seen["total_steps"] == 400 and 0 < seen["progress_percent"] < 100
    assert seen["loss"] is not None and seen["current_epoch"] >= 1
    text = logs(trainee, job["id"], tail=5)
    assert text.strip()  # the trainer's own lines, while it trains
    assert get(trainee, job["id"])["status"] == "running"
    later = wait_until(
        trainee, job["id"], lambda j: j["current_step"] > seen["current_step"], what="a step more"
    )
    assert later["status"] == "running"
    with trainee.http() as http:
        assert http.post(f"{FT}/jobs/{job['id']}/cancel").status_code == 200
        deleting = http.delete(f"{FT}/jobs/{job['id']}")
    assert deleting.status_code == 200


def test_cancel_while_training_ends_the_trainer(
    trainee: UserSession, train_server: LocalServer
) -> None:
    job = create_from(trainee, ALPACA * 25, config=LONG)
    wait_until(trainee, job["id"], lambda j: j["current_step"] >= 1, what="a step")
    tag = f"finetune-{job['id']}"
    assert tagged_pids(tag)
    with trainee.http() as http:
        answer = http.post(f"{FT}/jobs/{job['id']}/cancel")
        busy = http.delete(f"{FT}/jobs/{job['id']}")
    assert answer.json() == {"success": True, "message": f"Job {job['id']} cancelled"}
    assert busy.status_code == 200  # cancelled is finished: it may go
    assert tagged_pids(tag) == []
    assert get_status(trainee, job["id"]) == 404


def get_status(user: UserSession, job_id: str) -> int:
    with user.http() as http:
        return http.get(f"{FT}/jobs/{job_id}").status_code


def test_a_failure_says_why(trainee: UserSession) -> None:
    job = create_from(trainee, ALPACA, base_model="unsloth/mistral-7b-bnb-4bit", config=SMALL)
    done = wait_finished(trainee, job["id"])
    assert done["status"] == "failed"
    assert "not in the local Hugging Face cache" in done["error_message"]
    assert done["output_model_path"] is None


def _restart(server: LocalServer) -> LocalServer:
    server.kill()
    return LocalServer(server.data_dir, env=server.env).start()


def test_a_restart_during_training_reattaches_the_trainer(
    tmp_path: Path, tiny_hf_home: Path
) -> None:
    server = LocalServer(tmp_path / "plane", env=train_env(tiny_hf_home)).start()
    try:
        user = new_user(server.url)
        job = create_from(user, ALPACA * 25, config=LONG)
        before = wait_until(user, job["id"], lambda j: j["current_step"] >= 1, what="a step")
        runner = json.loads(
            (server.data_dir / "sandboxes" / "finetunes" / job["id"] / "state.json").read_text()
        )["pid"]
        server = _restart(server)
        user = UserSession(user.email, user.token, user.client, server.url)
        assert pid_alive(runner)
        assert get(user, job["id"])["status"] == "running"
        # The new control plane follows the same trainer: its progress keeps moving.
        later = wait_until(
            user,
            job["id"],
            lambda j: j["current_step"] >= before["current_step"] + 3,
            what="steps after the restart",
        )
        assert later["status"] == "running" and pid_alive(runner)
        with user.http() as http:
            assert http.post(f"{FT}/jobs/{job['id']}/cancel").status_code == 200
        assert get(user, job["id"])["status"] == "cancelled"
        assert not pid_alive(runner) and tagged_pids(f"finetune-{job['id']}") == []
    finally:
        server.stop()


def test_a_trainer_lost_while_the_control_plane_was_down_fails_with_a_reason(
    tmp_path: Path, tiny_hf_home: Path
) -> None:
    server = LocalServer(tmp_path / "plane", env=train_env(tiny_hf_home)).start()
    try:
        user = new_user(server.url)
        job = create_from(user, ALPACA * 25, config=LONG)
        wait_until(user, job["id"], lambda j: j["current_step"] >= 1, what="a step")
        state = json.loads(
            (server.data_dir / "sandboxes" / "finetunes" / job["id"] / "state.json").read_text()
        )
        server.kill()
        os.kill(state["pid"], signal.SIGKILL)  # the sandbox dies with its runner
        server = LocalServer(server.data_dir, env=server.env).start()
        user = UserSession(user.email, user.token, user.client, server.url)
        done = wait_finished(user, job["id"], timeout=60)
        assert (done["status"], done["error_message"]) == ("failed", LOST_WHILE_DOWN)
        deadline = time.monotonic() + 10
        while tagged_pids(f"finetune-{job['id']}") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tagged_pids(f"finetune-{job['id']}") == []
    finally:
        server.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_deploy_answers_a_completion(trainee: UserSession) -> None:
    job = create_from(trainee, ALPACA * 4, config={**SMALL, "max_steps": 4})
    assert wait_finished(trainee, job["id"])["status"] == "completed"
    port = _free_port()
    with trainee.http() as http:
        answer = http.post(
            f"{FT}/jobs/{job['id']}/deploy",
            json={"gpu_type": "RTX4090", "max_price": 50, "port": port},
        )
        assert answer.status_code == 200, answer.text
        deployed = answer.json()
        assert deployed["success"] is True and deployed["job_id"] == job["id"]
        assert deployed["endpoint_url"] == f"http://127.0.0.1:{port}/v1"
        assert deployed["gpu_type"] == "RTX 4090"
        instance = http.get(f"/api/v1/instances/{deployed['instance_id']}").json()
        assert instance["label"] == deployed["instance_name"]
    try:
        endpoint = deployed["endpoint_url"]
        deadline = time.monotonic() + 180
        models = None
        while time.monotonic() < deadline:
            try:
                models = httpx.get(f"{endpoint}/models", timeout=5)
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        assert models is not None and models.status_code == 200, "the model server never answered"
        name = models.json()["data"][0]["id"]
        completion = httpx.post(
            f"{endpoint}/completions",
            json={"model": name, "prompt": "Say hello.", "max_tokens": 4, "temperature": 0},
            timeout=60,
        )
        assert completion.status_code == 200, completion.text
        assert isinstance(completion.json()["choices"][0]["text"], str)
    finally:
        with trainee.http() as http:
            http.delete(f"/api/v1/instances/{deployed['instance_id']}")
