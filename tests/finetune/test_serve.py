"""serve.py: the tiny Llama plus an adapter trained by trainer.py, behind an OpenAI-compatible
API on a free loopback port (what a fine-tune deploy runs in its instance's sandbox)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.finetune.test_trainer import FAST, train, trainer_env
from tests.finetune.tinymodels import LLAMA_ID, write_dataset

SERVE = Path(__file__).resolve().parents[2] / "src/dumont_plan/server/finetune/serve.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def adapter(tiny_hf_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("serve-adapter")
    data = write_dataset(work / "data.jsonl", "sharegpt", copies=2)
    run = train(
        work,
        tiny_hf_home,
        base_model=LLAMA_ID,
        dataset_path=str(data),
        dataset_format="sharegpt",
        config=FAST,
        max_steps=2,
    )
    assert run.proc.returncode == 0, run.proc.stderr[-2000:]
    return run.out / "lora_model"


@pytest.fixture(scope="module")
def server(adapter: Path, tiny_hf_home: Path) -> Iterator[httpx.Client]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-I",
            str(SERVE),
            "--base-model",
            LLAMA_ID,
            "--adapter",
            str(adapter),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--model-name",
            "my-tuned-llama",
        ],
        env=trainer_env(tiny_hf_home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "serve.py did not answer /health in 90 s"
            try:
                if http.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield http
    finally:
        http.close()
        proc.terminate()
        try:
            assert proc.wait(timeout=10) == 0
        finally:
            proc.kill()
            proc.wait()
            if proc.stdout:
                proc.stdout.close()


@pytest.mark.slow
def test_models_lists_the_served_adapter(server: httpx.Client) -> None:
    answer = server.get("/v1/models")
    assert answer.status_code == 200
    body = answer.json()
    assert body["object"] == "list"
    assert [(m["id"], m["object"], m["root"]) for m in body["data"]] == [
        ("my-tuned-llama", "model", LLAMA_ID)
    ]


@pytest.mark.slow
def test_completion_is_greedy_at_temperature_zero(server: httpx.Client) -> None:
    request = {"model": "my-tuned-llama", "prompt": "The quick brown", "max_tokens": 6}
    first = server.post("/v1/completions", json={**request, "temperature": 0})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["object"] == "text_completion" and body["model"] == "my-tuned-llama"
    assert body["id"].startswith("cmpl-") and isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] in ("length", "stop")
    assert isinstance(choice["text"], str)
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and 0 < usage["completion_tokens"] <= 6
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    again = server.post("/v1/completions", json={**request, "temperature": 0}).json()
    assert again["choices"][0]["text"] == choice["text"]


@pytest.mark.slow
def test_chat_completion(server: httpx.Client) -> None:
    answer = server.post(
        "/v1/chat/completions",
        json={
            "messages": [
                {"role": "system", "content": "You are helpful."},
                {"role": "user", "content": "Tell me a joke about cats."},
            ],
            "max_tokens": 8,
            "temperature": 0.7,
        },
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert "###" not in choice["message"]["content"]
    assert body["usage"]["completion_tokens"] <= 8


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/v1/completions", {"prompt": 3}, 400, "prompt"),
        ("/v1/completions", {"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
        ("/v1/completions", {"prompt": "x", "temperature": 5}, 400, "temperature"),
        ("/v1/completions", {"prompt": "x", "stream": True}, 400, "stream"),
        ("/v1/completions", {"prompt": "x", "model": "gpt-4"}, 404, "model"),
        ("/v1/chat/completions", {"messages": []}, 400, "messages"),
        ("/v1/chat/completions", {"messages": [{"role": "bot", "content": "x"}]}, 400, "messages"),
    ],
)
def test_bad_requests_get_openai_errors(
    server: httpx.Client, path: str, body: dict[str, object], status: int, param: str
) -> None:
    answer = server.post(path, json=body)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert error["param"] == param and error["message"]
    assert error["type"] == "invalid_request_error"


@pytest.mark.slow
def test_unknown_route_and_bad_json(server: httpx.Client) -> None:
    assert server.get("/v1/nothing").status_code == 404
    answer = server.post(
        "/v1/completions", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert "not valid JSON" in answer.json()["error"]["message"]


def test_not_an_adapter_directory_is_one_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-I", str(SERVE), "--base-model", LLAMA_ID, "--adapter", str(tmp_path)],
        env=trainer_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert (
        proc.stderr.strip()
        == f"error: {tmp_path} is not a LoRA adapter directory (no adapter_config.json)"
    )
