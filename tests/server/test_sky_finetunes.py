"""Fine-tunes on the `skypilot` executor: a real local control plane started with
`--executor skypilot`, driven over HTTP, with SkyPilot's SDK faked at its boundary only
(tests/server/fake_sky.py: no cloud is reachable here). A fine-tune launches as a managed job
(the trainer and the dataset shipped as file mounts, the HF token a SkyPilot secret), its
status follows §6.5's table, its progress and logs come back, cancel cancels the managed job,
and the outputs the machine wrote to its bucket location come back through the API."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dumont_plan.server.provider import sky_finetunes
from dumont_plan.skypilot_task import TRAINER_SOURCE
from tests.server.finetune.ftsupport import ALPACA, FT, LLAMA, create_from, get, jsonl
from tests.server.test_executor_select import FAKE_SKY, executor_of
from tests.server.test_jobs_restart import as_user_of
from tests.server.test_sky_executor import Sky, start_sky_server, wait_for
from tests.support import LocalServer, UserSession, new_user

HF_TOKEN = "hf_operator_token_987"
OUT = "/workspace/outputs"


@pytest.fixture(scope="module")
def sky_ft(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalServer, Sky]]:
    hf_home = tmp_path_factory.mktemp("ft-hf-home")
    srv, sky = start_sky_server(
        tmp_path_factory, HF_TOKEN=HF_TOKEN, DUMONT_SERVER_HF_HOME=str(hf_home)
    )
    yield srv, sky
    srv.stop()


def launch(srv: LocalServer, sky: Sky, user: UserSession, **fields: Any) -> tuple[str, int]:
    """Create a fine-tune; wait until its managed job is launched and recorded."""
    before = sky.count()
    job = create_from(user, ALPACA, **fields)
    assert job["executor"] == "skypilot" and job["status"] in ("pending", "queued")
    sky_id = before + 1
    sky.launched(sky_id)
    wait_for(lambda: "launched as SkyPilot managed job" in logs(user, job["id"]), "the launch")
    return str(job["id"]), sky_id


def logs(user: UserSession, job_id: str) -> str:
    with user.http() as http:
        answer = http.get(f"{FT}/jobs/{job_id}/logs", params={"tail": 1000})
    assert answer.status_code == 200, answer.text
    text: str = answer.json()["logs"]
    return text


def refresh(user: UserSession, job_id: str) -> dict[str, Any]:
    with user.http() as http:
        answer = http.post(f"{FT}/jobs/{job_id}/refresh")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def progress_lines(*events: dict[str, Any]) -> bytes:
    return "".join(json.dumps(e) + "\n" for e in events).encode()


def test_a_fine_tune_launches_as_a_managed_job_with_its_files_and_secret(
    sky_ft: tuple[LocalServer, Sky],
) -> None:
    srv, sky = sky_ft
    user = new_user(srv.url)
    ft_id, sky_id = launch(
        srv,
        sky,
        user,
        name="Demo Tune",
        gpu_type="A100-80GB",
        num_gpus=2,
        use_spot=False,
        config={"epochs": 2, "lora_rank": 32},
    )
    launched = sky.launched(sky_id)
    task = launched["config"]
    assert launched["name"] == task["name"] == f"finetune-{ft_id}-demo-tune"
    assert task["resources"] == {"accelerators": "A100-80GB:2", "use_spot": False, "disk_size": 200}
    mounts = task["file_mounts"]
    assert Path(mounts["/opt/dumont/trainer.py"]).read_bytes() == TRAINER_SOURCE.read_bytes()
    assert Path(mounts["/dataset/dataset.jsonl"]).read_bytes() == jsonl(ALPACA)
    location = f"file://{sky.root}/bucket/dumont/finetune-{ft_id}"
    assert mounts[OUT] == {"source": f"{location}/outputs", "mode": "MOUNT_CACHED"}
    config = json.loads(task["run"].split("\n")[3])
    assert config["dataset_path"] == "/dataset/dataset.jsonl"
    assert config["base_model"] == LLAMA and config["output_dir"] == OUT
    assert config["config"]["epochs"] == 2 and config["config"]["lora_rank"] == 32
    # The operator's HF token: a SkyPilot secret with a value, never written anywhere.
    assert task["secrets"] == {"HF_TOKEN": None} and launched["secrets"] == {"HF_TOKEN": True}
    on_disk = json.dumps(launched) + "".join(
        p.read_text(errors="replace") for p in srv.data_dir.rglob("*") if p.is_file()
    )
    assert HF_TOKEN not in on_disk
    assert get(user, ft_id)["status"] == "queued"


def test_progress_logs_completion_and_outputs_come_back(sky_ft: tuple[LocalServer, Sky]) -> None:
    srv, sky = sky_ft
    user = new_user(srv.url)
    ft_id, sky_id = launch(srv, sky, user, name="full")
    sky.set(sky_id, "RUNNING", log=f"token {HF_TOKEN}\nepoch 1/2 step 3/8 loss 1.2500 lr 2e-4\n")
    job = refresh(user, ft_id)
    assert job["status"] == "running" and job["started_at"] is not None
    assert (job["current_epoch"], job["current_step"], job["total_steps"]) == (1, 3, 8)
    assert job["loss"] == pytest.approx(1.25) and job["progress_percent"] == 37.5
    text = logs(user, ft_id)
    assert "epoch 1/2 step 3/8" in text and "token ***" in text and HF_TOKEN not in text

    # The trainer writes its outputs under the storage mount; the job succeeds.
    sky.write(sky_id, f"{OUT}/lora_model/adapter_model.safetensors", b"adapter-bytes")
    sky.write(sky_id, f"{OUT}/training_stats.json", b'{"train_loss": 0.5}\n')
    sky.write(
        sky_id,
        f"{OUT}/progress.jsonl",
        progress_lines(
            {"event": "start", "total_steps": 8},
            {"event": "step", "step": 8, "total_steps": 8, "epoch": 2.0, "loss": 0.5},
            {"event": "done", "steps": 8, "output_model_path": f"{OUT}/lora_model"},
        ),
    )
    sky.set(sky_id, "SUCCEEDED", log="epoch 2/2 step 8/8 loss 0.5000 lr 0\ndone\n")
    srv.reconcile()
    wait_for(lambda: get(user, ft_id)["status"] == "completed", "completion")
    job = get(user, ft_id)
    assert job["output_model_path"] == f"{OUT}/lora_model" and job["error_message"] is None
    assert (job["current_step"], job["loss"], job["progress_percent"]) == (8, 0.5, 100.0)
    with user.http() as http:
        listed = http.get(f"{FT}/jobs/{ft_id}/outputs").json()["outputs"]
        paths = {o["path"] for o in listed}
        assert "outputs/lora_model/adapter_model.safetensors" in paths
        assert "outputs/training_stats.json" in paths
        one = http.get(
            f"{FT}/jobs/{ft_id}/outputs",
            params={"path": "outputs/lora_model/adapter_model.safetensors"},
        )
        assert one.content == b"adapter-bytes"
        archive = http.get(f"{FT}/jobs/{ft_id}/outputs", params={"archive": "tar.gz"})
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        assert f"finetune-{ft_id}/outputs/training_stats.json" in tar.getnames()
    assert "outputs copied back from" in logs(user, ft_id)
    assert not sky.cancelled(sky_id)


def test_the_reconciler_moves_progress_without_a_refresh(sky_ft: tuple[LocalServer, Sky]) -> None:
    srv, sky = sky_ft
    user = new_user(srv.url)
    ft_id, sky_id = launch(srv, sky, user, name="tick")
    sky.set(sky_id, "RUNNING", log="epoch 1/1 step 2/4 loss 0.7500 lr 1e-4\n")
    srv.reconcile()  # a running fine-tune's first pass fetches its log
    job = get(user, ft_id)
    assert job["status"] == "running"
    assert (job["current_step"], job["total_steps"], job["progress_percent"]) == (2, 4, 50.0)


def test_cancel_cancels_the_managed_job_and_keeps_what_it_wrote(
    sky_ft: tuple[LocalServer, Sky],
) -> None:
    srv, sky = sky_ft
    user = new_user(srv.url)
    ft_id, sky_id = launch(srv, sky, user, name="stop")
    sky.set(sky_id, "RUNNING")
    sky.write(sky_id, f"{OUT}/checkpoint-epoch-1/adapter.bin", b"ckpt")
    srv.reconcile()
    with user.http() as http:
        answer = http.post(f"{FT}/jobs/{ft_id}/cancel")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"success": True, "message": f"Job {ft_id} cancelled"}
    assert sky.cancelled(sky_id)
    assert get(user, ft_id)["status"] == "cancelled"

    def came_back() -> bool:
        with user.http() as http:
            listed = http.get(f"{FT}/jobs/{ft_id}/outputs").json()["outputs"]
        return [o["path"] for o in listed] == ["outputs/checkpoint-epoch-1/adapter.bin"]

    wait_for(came_back, "the copy of a cancelled fine-tune's outputs")
    srv.reconcile()
    assert get(user, ft_id)["status"] == "cancelled"


def test_a_failure_says_why(sky_ft: tuple[LocalServer, Sky]) -> None:
    srv, sky = sky_ft
    user = new_user(srv.url)
    ft_id, sky_id = launch(srv, sky, user, name="bad")
    sky.set(sky_id, "FAILED_SETUP")
    srv.reconcile()
    wait_for(lambda: get(user, ft_id)["status"] == "failed", "the failure")
    assert get(user, ft_id)["error_message"].startswith("the fine-tune's setup")

    # The trainer's own reason, from its progress file among the outputs, wins.
    ft_id, sky_id = launch(srv, sky, user, name="bad2")
    reason = "dataset record 3: missing field 'output'"
    sky.write(sky_id, f"{OUT}/progress.jsonl", progress_lines({"event": "error", "reason": reason}))
    sky.set(sky_id, "FAILED", log=f"error: {reason}\n")
    srv.reconcile()
    wait_for(lambda: get(user, ft_id)["status"] == "failed", "the failure")
    assert get(user, ft_id)["error_message"] == reason


def test_another_user_cannot_see_or_cancel_it(sky_ft: tuple[LocalServer, Sky]) -> None:
    srv, sky = sky_ft
    owner, other = new_user(srv.url), new_user(srv.url)
    ft_id, sky_id = launch(srv, sky, owner, name="mine")
    with other.http() as http:
        assert http.get(f"{FT}/jobs/{ft_id}").status_code == 404
        assert http.get(f"{FT}/jobs/{ft_id}/logs").status_code == 404
        assert http.post(f"{FT}/jobs/{ft_id}/cancel").status_code == 404
        assert http.get(f"{FT}/jobs/{ft_id}/outputs").status_code == 404
    assert not sky.cancelled(sky_id)


def test_status_says_skypilot_runs_fine_tunes(sky_ft: tuple[LocalServer, Sky]) -> None:
    srv, _ = sky_ft
    with new_user(srv.url).http() as http:
        status = http.get(f"{FT}/status").json()
    assert status["skypilot_available"] is True and status["finetune_available"] is True
    assert status["executors"]["skypilot"] == {"available": True, "reasons": [], "notes": []}
    assert status["executors"]["local"]["available"] is False
    assert status["message"] == "Fine-tuning available on: skypilot"


# -- §6.5's status table, through the API (one fine-tune per row) --------------------------

CONTRACT = [
    ("PENDING", "queued"),
    ("SETTING_UP", "queued"),
    ("RUNNING", "running"),
    ("SUCCEEDED", "completed"),
    ("FAILED", "failed"),
    ("CANCELLED", "cancelled"),
]
ADDITIVE = [  # SkyPilot's failure statuses the contract's table predates
    ("FAILED_SETUP", "failed"),
    ("FAILED_PRECHECKS", "failed"),
    ("FAILED_NO_RESOURCE", "failed"),
    ("FAILED_CONTROLLER", "failed"),
]
UNCHANGED = ["NOT_FOUND", "RECOVERING", "STARTING", "SUBMITTED", "CANCELLING", "WINDING_DOWN"]


@pytest.mark.parametrize(("sky_status", "ours"), CONTRACT + ADDITIVE)
def test_the_status_table(sky_status: str, ours: str) -> None:
    assert sky_finetunes.finetune_status(sky_status, "queued") == ours
    assert sky_finetunes.finetune_status(sky_status, "running") == ours


@pytest.mark.parametrize("sky_status", UNCHANGED)
def test_other_statuses_leave_it_unchanged(sky_status: str) -> None:
    for current in ("queued", "running"):
        assert sky_finetunes.finetune_status(sky_status, current) == current


def test_the_table_through_the_api(sky_ft: tuple[LocalServer, Sky]) -> None:
    srv, sky = sky_ft
    for sky_status, ours in [*CONTRACT, *ADDITIVE, *((s, "queued") for s in UNCHANGED)]:
        user = new_user(srv.url)  # each user trains max_running_finetunes (2) at once
        ft_id, sky_id = launch(srv, sky, user, name=f"t-{sky_status}")
        sky.set(sky_id, sky_status)
        refresh(user, ft_id)
        wait_for(lambda: get(user, ft_id)["status"] == ours, f"{sky_status} -> {ours}")  # noqa: B023


def test_without_credentials_status_says_why_and_create_refuses(tmp_path: Path) -> None:
    env = {"DUMONT_SERVER_SKY_MODULE": str(FAKE_SKY), "FAKE_SKY_DIR": str(tmp_path / "sky")}
    srv = LocalServer(tmp_path / "cp", env=env, extra_args=["--executor", "skypilot"]).start()
    try:
        executor_of(srv.url)
        user = new_user(srv.url)
        with user.http() as http:
            status = http.get(f"{FT}/status").json()
        assert status["skypilot_available"] is False
        (reason,) = status["executors"]["skypilot"]["reasons"]
        assert reason.startswith("sky check found no enabled cloud")
        assert reason in status["message"]
        path = http_upload(user)
        with user.http() as http:
            refused = http.post(
                f"{FT}/jobs",
                json={
                    "name": "x",
                    "base_model": LLAMA,
                    "dataset_source": "upload",
                    "dataset_path": path,
                },
            )
            assert refused.status_code == 503, refused.text
            assert (
                "SkyPilot cannot run fine-tunes here: sky check found no enabled cloud"
                in (refused.json()["error"])
            )
            assert http.get(f"{FT}/jobs").json()["count"] == 0
    finally:
        srv.stop()


def http_upload(user: UserSession) -> str:
    with user.http() as http:
        answer = http.post(f"{FT}/jobs/upload-dataset", files={"file": ("d.jsonl", jsonl(ALPACA))})
    assert answer.status_code == 200, answer.text
    path: str = answer.json()["dataset_path"]
    return path


def test_a_restarted_control_plane_follows_the_managed_job(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    srv, sky = start_sky_server(tmp_path_factory)
    try:
        user = new_user(srv.url)
        ft_id, sky_id = launch(srv, sky, user, name="restart")
        sky.set(sky_id, "RUNNING")
        srv.reconcile()
        srv.stop()
        srv = LocalServer(srv.data_dir, env=srv.env, extra_args=srv.extra_args).start()
        user = as_user_of(srv, user)
        sky.write(sky_id, f"{OUT}/lora_model/adapter.bin", b"after-restart")
        sky.set(sky_id, "SUCCEEDED")
        srv.reconcile()
        wait_for(lambda: get(user, ft_id)["status"] == "completed", "completion")
        with user.http() as http:
            listed = http.get(f"{FT}/jobs/{ft_id}/outputs").json()["outputs"]
        assert [o["path"] for o in listed] == ["outputs/lora_model/adapter.bin"]
        assert sky.count() == 1  # followed, not launched again
    finally:
        srv.stop()
