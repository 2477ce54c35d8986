"""`dumont finetune …` end to end: the CLI in a subprocess against a real local control plane.

The server here lets no fine-tune train (`DUMONT_SERVER_MAX_RUNNING_FINETUNES=0`): each stays
`pending`, so what the CLI sends and shows is seen without a trainer. Training through the CLI
is tests/finetune/test_finetune_cli_training.py (it needs the `finetune` extra).
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import LocalServer, UserSession, cli_env, new_user, run_cli

Cli = Callable[..., subprocess.CompletedProcess[str]]
LLAMA = "unsloth/llama-3-8b-bnb-4bit"
ALPACA = '{"instruction": "Say hi.", "input": "", "output": "Hi!"}\n'
SHAREGPT = '{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]}\n'


@pytest.fixture(scope="module")
def pending_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    hf_home = tmp_path_factory.mktemp("cli-ft-hf-home")
    (hf_home / "hub").mkdir()
    env = {
        "DUMONT_SERVER_MAX_RUNNING_FINETUNES": "0",
        "DUMONT_SERVER_HF_HOME": str(hf_home),
    }
    server = LocalServer(tmp_path_factory.mktemp("cli-ft-server"), env=env).start()
    yield server
    server.stop()


@pytest.fixture
def ft_user(pending_server: LocalServer) -> UserSession:
    return new_user(pending_server.url)


@pytest.fixture
def dumont(home: Path, ft_user: UserSession, tmp_path: Path) -> Cli:
    env = cli_env(home, ft_user.url, ft_user.token)

    def run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        kwargs.setdefault("cwd", tmp_path)
        return run_cli(list(args), env, **kwargs)

    return run


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result


def one_error_line(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines
    return lines[0]


def dataset(tmp_path: Path, text: str = ALPACA * 3, name: str = "train.jsonl") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def create_json(dumont: Cli, *args: str) -> dict[str, Any]:
    job: dict[str, Any] = json.loads(ok(dumont("finetune", "create", *args, "-o", "json")).stdout)
    return job


# ------------------------------------------------------------------------------- catalogue


def test_models_lists_the_supported_base_models(dumont: Cli) -> None:
    table = ok(dumont("finetune", "models")).stdout
    assert "unsloth/llama-3-8b-bnb-4bit" in table and "Llama 3 8B" in table
    models = json.loads(ok(dumont("finetune", "models", "--output", "json")).stdout)["models"]
    ids = [model["id"] for model in models]
    assert {LLAMA, "unsloth/Qwen2-7B-bnb-4bit"} <= set(ids)
    assert set(models[0]) >= {"id", "name", "parameters", "min_vram", "recommended_gpu"}


def test_presets_are_listed_with_their_config(dumont: Cli) -> None:
    presets = json.loads(ok(dumont("finetune", "presets", "-o", "json")).stdout)["presets"]
    names = {preset["name"] for preset in presets}
    assert {"quick-test", "chat"} <= names
    assert "quick-test" in ok(dumont("finetune", "presets")).stdout


# -------------------------------------------------------------------------------- upload


def test_upload_a_jsonl_and_a_json_dataset(dumont: Cli, tmp_path: Path) -> None:
    jsonl = dataset(tmp_path)
    answer = json.loads(ok(dumont("finetune", "upload", str(jsonl), "-o", "json")).stdout)
    assert answer["success"] is True and answer["records"] == 3
    assert answer["format"] == "alpaca"
    assert len(answer["sha256"]) == 64
    records = [json.loads(line) for line in SHAREGPT.splitlines()] * 2
    array = dataset(tmp_path, json.dumps(records), "chats.json")
    shown = ok(dumont("finetune", "upload", str(array), "--format=sharegpt"))
    assert shown.stdout.strip().endswith("chats.json")  # the server path, for --dataset
    assert "Uploaded chats.json (2 records, sharegpt): " in shown.stderr


def test_a_bad_record_is_one_line_naming_its_line_and_field(dumont: Cli, tmp_path: Path) -> None:
    bad = dataset(tmp_path, ALPACA + '{"instruction": "x"}\n', "bad.jsonl")
    line = one_error_line(dumont("finetune", "upload", str(bad), "--format=alpaca"))
    assert line.startswith(f"Error: finetune upload: {bad}: ")
    assert "line 2" in line and "output" in line
    assert line.endswith("; fix the file, then upload it again")


def test_upload_refuses_what_is_not_a_dataset_file_before_sending(
    dumont: Cli, tmp_path: Path
) -> None:
    csv = dataset(tmp_path, "a,b\n", "data.csv")
    assert one_error_line(dumont("finetune", "upload", str(csv))) == (
        f"Error: finetune create: --dataset={csv}: only .json and .jsonl files can be uploaded; "
        "save the records as JSON Lines (one JSON object a line) in a .jsonl file"
    ).replace("finetune create", "finetune upload")
    assert one_error_line(dumont("finetune", "upload", "x.jsonl", "--format=alpacca")) == (
        "Error: finetune upload: --format=alpacca is not one of alpaca, sharegpt, raw; "
        "did you mean 'alpaca'? use one of: alpaca, sharegpt, raw"
    )


# -------------------------------------------------------------------------------- create


def test_create_uploads_a_local_file_and_sends_the_config_nested(
    dumont: Cli, tmp_path: Path, ft_user: UserSession
) -> None:
    data = dataset(tmp_path)
    result = ok(
        dumont(
            "finetune",
            "create",
            "demo",
            f"--model={LLAMA}",
            f"--dataset={data}",
            "--format=alpaca",
            "--gpu=A100",
            "--epochs=3",
            "--lr=2e-4",
            "--lora-rank=32",
            "--lora-alpha=64",
        )
    )
    first = result.stdout.splitlines()[0]
    assert first.startswith("Created fine-tune ") and first.endswith(" (demo): pending")
    job_id = first.split()[2]
    job = ft_user.client.finetune.get(job_id)
    assert job.dataset_source == "upload" and job.dataset_path and job.dataset_path != str(data)
    assert job.config["epochs"] == 3 and job.config["learning_rate"] == 2e-4
    assert (job.config["lora_rank"], job.config["lora_alpha"]) == (32, 64)
    assert (job.base_model, job.gpu_type, job.dataset_format) == (LLAMA, "A100", "alpaca")
    assert result.stderr == ""  # off a terminal: no progress bar, no upload line


def test_create_with_an_uploaded_path_and_a_preset_where_flags_win(
    dumont: Cli, tmp_path: Path
) -> None:
    uploaded = ok(dumont("finetune", "upload", str(dataset(tmp_path)))).stdout.strip()
    job = create_json(
        dumont,
        "qwen",
        "--model=unsloth/Qwen2-7B-bnb-4bit",
        f"--dataset={uploaded}",
        "--dataset-source=upload",  # this server's path is also a file here: not uploaded again
        "--preset=quick-test",
        "--epochs=2",
    )
    assert job["dataset_source"] == "upload" and job["dataset_path"] == uploaded
    assert job["config"]["epochs"] == 2  # the flag
    assert job["config"]["lora_rank"] == 8  # the preset
    assert job["config"]["max_steps"] == 10  # all of it, also what no flag sets


def test_create_with_sharegpt(dumont: Cli, tmp_path: Path) -> None:
    data = dataset(tmp_path, SHAREGPT * 2, "chat.jsonl")
    job = create_json(dumont, "chat", f"--model={LLAMA}", f"--dataset={data}", "--format=sharegpt")
    assert job["dataset_format"] == "sharegpt" and job["status"] == "pending"


def test_create_refusals_are_one_line(dumont: Cli, tmp_path: Path) -> None:
    data = str(dataset(tmp_path))
    line = one_error_line(
        dumont("finetune", "create", "x", "--model=unsloth/llama-3-8b", f"--dataset={data}")
    )
    assert line.startswith(
        "Error: finetune create: the API refused the fine-tune: --model: unknown base model "
        "'unsloth/llama-3-8b'; did you mean unsloth/llama-3-8b-bnb-4bit"
    )
    assert one_error_line(
        dumont("finetune", "create", "x", f"--model={LLAMA}", "--dataset=nope.jsonl")
    ) == (
        "Error: finetune create: --dataset=nope.jsonl: no such file; check the path, or upload "
        "it first: dumont finetune upload FILE"
    )
    assert one_error_line(
        dumont("finetune", "create", "x", f"--model={LLAMA}", f"--dataset={data}", "--lr=1")
    ) == ("Error: finetune create: --lr=1 is out of range; use 1e-6–1e-2")
    assert "did you mean 'chat'?" in one_error_line(
        dumont("finetune", "create", "x", f"--model={LLAMA}", f"--dataset={data}", "--preset=caht")
    )


def test_dry_run_prints_the_skypilot_task_and_creates_nothing(
    dumont: Cli, tmp_path: Path, ft_user: UserSession
) -> None:
    data = dataset(tmp_path)
    args = ["finetune", "create", "demo", f"--model={LLAMA}", f"--dataset={data}", "--gpu=H100"]
    shown = ok(dumont(*args, "--num-gpus=2", "--dry-run", "--output", "yaml")).stdout
    assert shown.startswith("name: finetune-demo\nresources:\n  accelerators: H100:2\n")
    assert f"  /dataset/train.jsonl: {data}\n" in shown
    assert "secrets:\n  HF_TOKEN: null\n" in shown
    assert ft_user.client.finetune.list().jobs == []
    assert "Error: finetune create: --output yaml needs --dry-run" in one_error_line(
        dumont(*args, "-o", "yaml")
    )


# ------------------------------------------------------------------------ reading, acting


def test_list_status_logs_refresh_cancel_delete(dumont: Cli, tmp_path: Path) -> None:
    job = create_json(dumont, "life", f"--model={LLAMA}", f"--dataset={dataset(tmp_path)}")
    job_id = job["id"]
    listed = json.loads(ok(dumont("finetune", "list", "--status=pending", "-o", "json")).stdout)
    assert [j["id"] for j in listed["jobs"]] == [job_id] and listed["count"] == 1
    assert job_id in ok(dumont("finetune", "list")).stdout
    shown = ok(dumont("finetune", "status", job_id)).stdout
    assert "status" in shown and "pending" in shown and "config.lora_rank" in shown
    assert json.loads(ok(dumont("finetune", "status", job_id, "-o", "json")).stdout)["id"] == job_id
    assert (
        json.loads(ok(dumont("finetune", "logs", job_id, "-o", "json")).stdout)["job_id"] == job_id
    )
    assert (
        json.loads(ok(dumont("finetune", "refresh", job_id, "-o", "json")).stdout)["id"] == job_id
    )
    assert ok(dumont("finetune", "cancel", job_id)).stdout.strip() == f"Job {job_id} cancelled"
    line = one_error_line(dumont("finetune", "cancel", job_id))
    assert line.startswith("Error: finetune cancel: ")
    assert line.endswith(f"see it with `dumont finetune status {job_id}`")
    waited = dumont("finetune", "wait", job_id)
    assert waited.returncode == 5 and f"fine-tune {job_id} ended cancelled" in waited.stderr
    assert ok(dumont("finetune", "delete", job_id)).stdout.strip() == f"Job {job_id} deleted"
    assert one_error_line(dumont("finetune", "status", job_id)) == (
        f"Error: finetune status: no fine-tune {job_id} (or it is not yours); "
        "see your fine-tunes with `dumont finetune list`"
    )


def test_wait_on_a_pending_fine_tune_times_out_with_exit_4(dumont: Cli, tmp_path: Path) -> None:
    job = create_json(dumont, "slow", f"--model={LLAMA}", f"--dataset={dataset(tmp_path)}")
    waited = dumont("finetune", "wait", job["id"], "--timeout=1s", "--poll=0.2")
    assert waited.returncode == 4
    assert f"fine-tune {job['id']} is still pending after 1s of waiting" in waited.stderr
    assert f"{job['id']} (slow): pending" in waited.stderr  # the status line


def test_list_status_typo_gets_a_did_you_mean(dumont: Cli) -> None:
    assert one_error_line(dumont("finetune", "list", "--status=runing")) == (
        "Error: finetune list: --status=runing is not one of pending, uploading, queued, "
        "running, completed, failed, cancelled; did you mean 'running'? use one of: pending, "
        "uploading, queued, running, completed, failed, cancelled"
    )


@pytest.mark.slow  # the API's side is tests/adversarial/test_auth_matrix.py
def test_another_user_cannot_see_or_touch_a_fine_tune(
    dumont: Cli, tmp_path: Path, pending_server: LocalServer, home: Path
) -> None:
    job = create_json(dumont, "mine", f"--model={LLAMA}", f"--dataset={dataset(tmp_path)}")
    other = new_user(pending_server.url)
    env = cli_env(home, other.url, other.token)
    for command in ("status", "logs", "cancel", "download", "delete"):
        result = run_cli(["finetune", command, job["id"]], env, cwd=tmp_path)
        assert result.returncode == 1, (command, result.stderr)
        assert f"no fine-tune {job['id']} (or it is not yours)" in result.stderr, command
    listed = json.loads(run_cli(["finetune", "list", "-o", "json"], env).stdout)
    assert listed == {"jobs": [], "count": 0}


def test_ctrl_c_while_waiting_leaves_the_fine_tune_running_and_says_how_to_cancel(
    dumont: Cli, tmp_path: Path, home: Path, ft_user: UserSession
) -> None:
    job = create_json(dumont, "long", f"--model={LLAMA}", f"--dataset={dataset(tmp_path)}")
    env = cli_env(home, ft_user.url, ft_user.token)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dumont_plan", "finetune", "wait", job["id"], "--poll=0.2"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()  # the status line: it is waiting now
    assert f"{job['id']} (long): pending" in first
    # A moment later it sleeps between polls (a signal in the middle of rich writing the line
    # out would print it a second time).
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert rest.strip() == (
        f"Stopped waiting; the fine-tune {job['id']} goes on. Follow it: dumont finetune wait "
        f"{job['id']}; cancel it: dumont finetune cancel {job['id']}"
    )
    assert ft_user.client.finetune.get(job["id"]).status == "pending"


def test_on_a_terminal_the_upload_shows_a_progress_bar(
    ft_user: UserSession, home: Path, tmp_path: Path
) -> None:
    record = json.loads(ALPACA)
    data = dataset(
        tmp_path, "".join(json.dumps({**record, "input": "x" * i}) + "\n" for i in range(300))
    )
    env = {**cli_env(home, ft_user.url, ft_user.token), "COLUMNS": "100"}
    main, child = pty.openpty()
    args = ["finetune", "create", "tty", f"--model={LLAMA}", f"--dataset={data}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "dumont_plan", *args],
        env=env,
        cwd=tmp_path,
        stdin=child,
        stdout=child,
        stderr=child,
    )
    os.close(child)
    screen = b""
    with contextlib.suppress(OSError):  # EIO once the process closed the terminal
        while chunk := os.read(main, 4096):
            screen += chunk
    os.close(main)
    assert proc.wait(timeout=60) == 0
    text = screen.decode(errors="replace")
    assert "Uploading train.jsonl" in text and "━" in text  # the bar
    assert "Uploaded train.jsonl (300 records, alpaca): " in text
    assert "Created fine-tune " in text
