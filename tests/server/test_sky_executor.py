"""The `skypilot` executor: a real local control plane started with `--executor skypilot`, driven
over HTTP, with SkyPilot's SDK faked at its boundary only (tests/server/fake_sky.py: no cloud is
reachable here). A job goes launch -> provisioning -> running -> completed, its logs and cancel
come back over the API, `timeout_minutes` is enforced on the server's clock, and the status
mapping is the table in `sky_jobs`."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dumont_plan.server.provider import sky_jobs
from tests.server.jobfixtures import JOBS, create_job, get_job, logs
from tests.server.test_executor_select import FAKE_SKY, executor_of
from tests.support import LocalServer, UserSession, cli_env, new_user, run_cli

SECRET = "s3cr3t-value-42"
HF_TOKEN = "hf_fake_token_123"


class Sky:
    """The test's side of the fake SDK: what was launched, and the status/log it reports."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def launched(self, sky_id: int, timeout: float = 20) -> dict[str, Any]:
        path = self.root / "launched" / f"{sky_id}.json"
        deadline = time.monotonic() + timeout
        while not path.exists():
            assert time.monotonic() < deadline, f"SkyPilot job {sky_id} was never launched"
            time.sleep(0.05)
        found: dict[str, Any] = json.loads(path.read_text())
        return found

    def count(self) -> int:
        return len(list((self.root / "launched").glob("*.json")))

    def set(self, sky_id: int, status: str, log: str | None = None) -> None:
        for sub in ("status", "logs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        if log is not None:  # the log first: a pass that sees the status sees its log
            (self.root / "logs" / str(sky_id)).write_text(log)
        (self.root / "status" / str(sky_id)).write_text(status)

    def cancelled(self, sky_id: int) -> bool:
        return (self.root / "cancelled" / str(sky_id)).exists()

    def write(self, sky_id: int, path: str, content: bytes) -> None:
        """The managed job writes `path` (absolute, on its machine)."""
        target = self.root / "writes" / str(sky_id) / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def sky_env(root: Path) -> dict[str, str]:
    """A control plane on the fake SDK (an enabled cloud), keeping outputs under `root`."""
    (root / "clouds.json").write_text(json.dumps({"default": {"aws": ["compute"]}}))
    return {
        "DUMONT_SERVER_SKY_MODULE": str(FAKE_SKY),
        "FAKE_SKY_DIR": str(root),
        "DUMONT_SERVER_SKY_OUTPUTS": f"file://{root}/bucket/dumont",
    }


def wait_for(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.05)


def start_sky_server(
    tmp_path_factory: pytest.TempPathFactory, **env: str
) -> tuple[LocalServer, Sky]:
    """A control plane started with `--executor skypilot` on the fake SDK, usable."""
    root = tmp_path_factory.mktemp("fake-sky")
    srv = LocalServer(
        tmp_path_factory.mktemp("sky-cp"),
        env={**sky_env(root), **env},
        extra_args=["--executor", "skypilot"],
    ).start()
    assert executor_of(srv.url)["available"] is True
    return srv, Sky(root)


@pytest.fixture(scope="module")
def sky_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalServer, Sky]]:
    srv, sky = start_sky_server(tmp_path_factory)
    yield srv, sky
    srv.stop()


def new_launch(srv: LocalServer, sky: Sky, user: UserSession, **fields: Any) -> tuple[str, int]:
    before = sky.count()
    job = create_job(user, **fields)
    sky_id = before + 1
    sky.launched(sky_id)
    # The launch's answer is recorded just after the SDK call returns: wait for its note.
    deadline = time.monotonic() + 20
    while "launched as SkyPilot managed job" not in logs(user, job["id"]):
        assert time.monotonic() < deadline, "the launch was never recorded"
        time.sleep(0.05)
    srv.reconcile()
    return str(job["id"]), sky_id


def test_a_job_runs_as_a_managed_job_through_to_completed(
    sky_server: tuple[LocalServer, Sky],
) -> None:
    srv, sky = sky_server
    user = new_user(srv.url)
    job_id, sky_id = new_launch(
        srv,
        sky,
        user,
        name="train",
        command=f"python train.py --key {SECRET}",
        secrets={"API_KEY": SECRET},
        hf_token=HF_TOKEN,
        gpu_type="A100 80GB",
        num_gpus=2,
        use_spot=False,
        disk_size=80,
        pip_packages=["numpy"],
        setup_script="echo ready",
        image="pytorch/pytorch:latest",
    )
    launched = sky.launched(sky_id)
    task = launched["config"]
    assert launched["name"] == "job-train"
    assert task["resources"] == {
        "accelerators": "A100-80GB:2",
        "use_spot": False,
        "disk_size": 80,
        "image_id": "docker:pytorch/pytorch:latest",
    }
    assert task["setup"] == "pip install --quiet numpy\necho ready\n"
    # The command held a secret: the task runs it from a SkyPilot secret, never in clear.
    assert task["run"] == 'eval "$DUMONT_RUN_LINE_0"\n'
    assert task["envs"] == {"DUMONT_JOB_ID": job_id}
    assert set(task["secrets"]) == {"API_KEY", "HF_TOKEN", "DUMONT_RUN_LINE_0"}
    assert launched["secrets"] == dict.fromkeys(task["secrets"], True)
    on_disk = json.dumps(launched) + "".join(
        p.read_text() for p in srv.data_dir.rglob("*") if p.is_file() and p.suffix == ".json"
    )
    assert SECRET not in on_disk and HF_TOKEN not in on_disk
    assert get_job(user, job_id)["status"] == "provisioning"

    sky.set(sky_id, "STARTING")
    srv.reconcile()
    assert get_job(user, job_id)["status"] == "starting"
    sky.set(sky_id, "RUNNING", log=f"epoch 1 key={SECRET}\n")
    srv.reconcile()
    job = get_job(user, job_id)
    assert job["status"] == "running" and job["started_at"] is not None
    text = logs(user, job_id)
    assert "epoch 1 key=***" in text and SECRET not in text
    assert "launched as SkyPilot managed job" in text

    sky.set(sky_id, "SUCCEEDED", log=f"epoch 1 key={SECRET}\nepoch 2\ndone\n")
    srv.reconcile()
    job = get_job(user, job_id)
    assert job["status"] == "completed" and job["error_message"] is None
    assert "done" in logs(user, job_id)
    assert not sky.cancelled(sky_id)


def test_cancel_cancels_the_managed_job(sky_server: tuple[LocalServer, Sky]) -> None:
    srv, sky = sky_server
    user = new_user(srv.url)
    job_id, sky_id = new_launch(srv, sky, user, name="c", command="sleep 1000")
    sky.set(sky_id, "RUNNING")
    srv.reconcile()
    with user.http() as http:
        answer = http.post(f"{JOBS}{job_id}/cancel")
    assert answer.status_code == 200, answer.text
    assert sky.cancelled(sky_id)
    srv.reconcile()
    assert get_job(user, job_id)["status"] == "cancelled"


def test_timeout_minutes_cancels_and_ends_timeout(sky_server: tuple[LocalServer, Sky]) -> None:
    srv, sky = sky_server
    user = new_user(srv.url)
    job_id, sky_id = new_launch(srv, sky, user, name="t", command="sleep 1000", timeout_minutes=10)
    sky.set(sky_id, "RUNNING")
    srv.reconcile()
    assert get_job(user, job_id)["status"] == "running"
    clock = httpx.post(srv.url + "/api/v1/_local/clock", json={"advance_seconds": 9 * 60})
    assert clock.status_code == 200
    srv.reconcile()
    assert get_job(user, job_id)["status"] == "running"
    httpx.post(srv.url + "/api/v1/_local/clock", json={"advance_seconds": 2 * 60})
    srv.reconcile()
    job = get_job(user, job_id)
    assert job["status"] == "timeout"
    assert job["error_message"] == "Job exceeded its timeout of 10 minutes"
    assert sky.cancelled(sky_id)


def test_a_failed_managed_job_fails_the_job_with_its_reason(
    sky_server: tuple[LocalServer, Sky],
) -> None:
    srv, sky = sky_server
    user = new_user(srv.url)
    job_id, sky_id = new_launch(srv, sky, user, name="f", command="true")
    sky.set(sky_id, "FAILED_NO_RESOURCE")
    srv.reconcile()
    job = get_job(user, job_id)
    assert job["status"] == "failed"
    assert job["error_message"].startswith("Failed to provision GPU")


def test_a_git_source_is_the_tasks_workdir_with_its_token_a_secret(
    sky_server: tuple[LocalServer, Sky],
) -> None:
    srv, sky = sky_server
    user = new_user(srv.url)
    _, sky_id = new_launch(
        srv,
        sky,
        user,
        name="g",
        source="git",
        git_url="https://bob:tok-12345@git.example.com/team/repo.git",
        git_branch="dev",
        command="python main.py",
    )
    launched = sky.launched(sky_id)
    task = launched["config"]
    assert task["workdir"] == {"url": "https://git.example.com/team/repo.git", "ref": "dev"}
    assert task["setup"].startswith("if [ -f requirements.txt ]")
    assert task["run"] == "python main.py\n"
    assert launched["secrets"]["GIT_TOKEN"] is True
    assert "tok-12345" not in json.dumps(launched)


def test_an_uploaded_workdir_is_the_tasks_workdir(sky_server: tuple[LocalServer, Sky]) -> None:
    srv, sky = sky_server
    user = new_user(srv.url)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("train.py")
        info.size = 13
        tar.addfile(info, io.BytesIO(b"print('hi')\n\n"))
    with user.http() as http:
        uploaded = http.post(
            f"{JOBS}workdirs", files={"file": ("w.tar.gz", buffer.getvalue(), "application/gzip")}
        )
    assert uploaded.status_code == 201, uploaded.text
    _, sky_id = new_launch(
        srv,
        sky,
        user,
        name="w",
        command="python train.py",
        workdir_id=uploaded.json()["workdir_id"],
    )
    workdir = Path(sky.launched(sky_id)["config"]["workdir"])
    assert (workdir / "train.py").read_text() == "print('hi')\n\n"


def test_another_user_cannot_see_or_cancel_a_skypilot_job(
    sky_server: tuple[LocalServer, Sky],
) -> None:
    srv, sky = sky_server
    owner, other = new_user(srv.url), new_user(srv.url)
    job_id, sky_id = new_launch(srv, sky, owner, name="mine", command="true")
    with other.http() as http:
        assert http.get(f"{JOBS}{job_id}").status_code == 404
        assert http.post(f"{JOBS}{job_id}/cancel").status_code == 404
    assert not sky.cancelled(sky_id)


# -- the status mapping, table-driven --------------------------------------------------------

JOB_CASES = [
    ("PENDING", "provisioning"),
    ("SUBMITTED", "provisioning"),
    ("STARTING", "starting"),
    ("RUNNING", "running"),
    ("RECOVERING", "provisioning"),
    ("CANCELLING", "running"),
    ("WINDING_DOWN", "completing"),
    ("SUCCEEDED", "completed"),
    ("CANCELLED", "cancelled"),
    ("FAILED", "failed"),
    ("FAILED_SETUP", "failed"),
    ("FAILED_PRECHECKS", "failed"),
    ("FAILED_NO_RESOURCE", "failed"),
    ("FAILED_CONTROLLER", "failed"),
]


@pytest.mark.parametrize(("sky_status", "ours"), JOB_CASES)
def test_job_status_mapping(sky_status: str, ours: str) -> None:
    assert sky_jobs.JOB_STATUS[sky_status] == ours


def test_the_job_table_covers_every_status_it_names() -> None:
    assert set(sky_jobs.JOB_STATUS) == {s for s, _ in JOB_CASES}
    failed = {s for s, ours in JOB_CASES if ours == "failed"}
    assert failed == set(sky_jobs.FAILURES)


def test_num_nodes_is_skypilots_and_every_node_is_billed(
    sky_server: tuple[LocalServer, Sky],
) -> None:
    srv, sky = sky_server
    assert "jobs.num-nodes" in httpx.get(srv.url + "/health").json()["capabilities"]
    user = new_user(srv.url)
    job_id, sky_id = new_launch(
        srv,
        sky,
        user,
        name="n",
        command="torchrun train.py",
        num_nodes=3,
        num_gpus=2,
        use_spot=False,  # on-demand: its price moves little between the two creates
    )
    assert sky.launched(sky_id)["config"]["num_nodes"] == 3
    assert get_job(user, job_id)["num_nodes"] == 3
    with user.http() as http:  # one log holds every node's output: no rank's own
        assert http.get(f"{JOBS}{job_id}/logs", params={"rank": 0}).status_code == 200
        refused = http.get(f"{JOBS}{job_id}/logs", params={"rank": 1})
    assert refused.status_code == 422, refused.text
    assert refused.json()["details"][0]["msg"] == (
        "SkyPilot keeps one log of every node's output: leave out rank"
    )
    single = create_job(user, name="one", command="true", num_gpus=2, use_spot=False)
    assert get_job(user, job_id)["price_per_hour"] == pytest.approx(
        3 * single["price_per_hour"], rel=0.02
    )


def test_the_local_executor_takes_several_nodes_up_to_its_limit(server: LocalServer) -> None:
    assert "jobs.num-nodes" in httpx.get(server.url + "/health").json()["capabilities"]
    user = new_user(server.url)
    with user.http() as http:
        refused = http.post(JOBS, json={"command": "true", "num_nodes": 17})
    assert refused.status_code == 422, refused.text
    assert refused.json()["details"][0]["loc"] == ["body", "num_nodes"]
    assert create_job(user, command="true", num_nodes=2)["num_nodes"] == 2


def test_cli_nodes_reaches_skypilot_and_the_local_ranks(
    sky_server: tuple[LocalServer, Sky], server: LocalServer, tmp_path: Path
) -> None:
    srv, sky = sky_server
    for target, on_sky in ((srv, True), (server, False)):
        user = new_user(target.url)
        env = cli_env(tmp_path / ("sky" if on_sky else "local"), user.url, user.token)
        Path(env["HOME"]).mkdir()
        before = sky.count()
        done = run_cli(
            ["job", "create", "multi", "--command", "true", "--nodes", "2", "-o", "json"], env
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["num_nodes"] == 2
        if on_sky:
            assert sky.launched(before + 1)["config"]["num_nodes"] == 2
        else:
            assert sky.count() == before


def test_a_jobs_outputs_come_back_from_its_bucket_location(
    sky_server: tuple[LocalServer, Sky],
) -> None:
    srv, sky = sky_server
    user = new_user(srv.url)
    job_id, sky_id = new_launch(
        srv, sky, user, name="o", command="python train.py", output_paths=["/workspace/output"]
    )
    task = sky.launched(sky_id)["config"]
    location = f"file://{sky.root}/bucket/dumont/job-{job_id}"
    assert task["file_mounts"] == {
        "/workspace/output": {"source": f"{location}/output", "mode": "MOUNT_CACHED"}
    }
    sky.set(sky_id, "RUNNING")
    sky.write(sky_id, "/workspace/output/model.bin", b"weights-1")
    sky.write(sky_id, "/workspace/output/sub/metrics.json", b'{"acc": 0.9}')
    srv.reconcile()
    sky.set(sky_id, "SUCCEEDED", log="done\n")
    srv.reconcile()
    wait_for(lambda: get_job(user, job_id)["status"] == "completed", "completion")
    with user.http() as http:
        listed = http.get(f"{JOBS}{job_id}/outputs").json()["outputs"]
        assert {o["path"]: o["size"] for o in listed} == {
            "output/model.bin": 9,
            "output/sub/metrics.json": 12,
        }
        assert http.get(f"{JOBS}{job_id}/outputs/output/model.bin").content == b"weights-1"
    assert "outputs copied back from" in logs(user, job_id)
