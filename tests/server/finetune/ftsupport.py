"""Helpers of the fine-tune API tests: uploads, creates, polling, small datasets."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support import UserSession

FT = "/api/v1/finetune"
FINISHED = {"completed", "failed", "cancelled"}
LLAMA = "unsloth/llama-3-8b-bnb-4bit"
ALPACA = [
    {"instruction": "Say hello.", "input": "", "output": "Hello! How can I help you today?"},
    {"instruction": "Count.", "input": "to five", "output": "One two three four five."},
]
SHAREGPT = [
    {
        "conversations": [
            {"from": "human", "value": "Tell me a joke about cats."},
            {"from": "gpt", "value": "The quick brown fox jumps over the lazy dog."},
        ]
    },
    {
        "conversations": [
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "The capital of France is Paris."},
        ]
    },
]


def jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def upload(
    user: UserSession,
    content: bytes,
    filename: str = "data.jsonl",
    fmt: str | None = None,
    expect: int = 200,
) -> dict[str, Any]:
    data = {"format": fmt} if fmt else None
    with user.http() as http:
        answer = http.post(
            f"{FT}/jobs/upload-dataset", files={"file": (filename, content)}, data=data
        )
    assert answer.status_code == expect, answer.text
    body: dict[str, Any] = answer.json()
    return body


def create(user: UserSession, expect: int = 201, **fields: Any) -> dict[str, Any]:
    with user.http() as http:
        answer = http.post(f"{FT}/jobs", json=fields)
    assert answer.status_code == expect, answer.text
    body: dict[str, Any] = answer.json()
    return body


def create_from(user: UserSession, records: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """Upload `records` as .jsonl, then create a fine-tune on them."""
    path = upload(user, jsonl(records))["dataset_path"]
    body = {"name": "ft", "base_model": LLAMA, "dataset_source": "upload", "dataset_path": path}
    return create(user, **{**body, **fields})


def get(user: UserSession, job_id: str, **params: Any) -> dict[str, Any]:
    with user.http() as http:
        answer = http.get(f"{FT}/jobs/{job_id}", params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def logs(user: UserSession, job_id: str, tail: int = 100) -> str:
    with user.http() as http:
        answer = http.get(f"{FT}/jobs/{job_id}/logs", params={"tail": tail})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["logs"])


def wait_until(
    user: UserSession, job_id: str, check: Any, timeout: float = 240, what: str = ""
) -> dict[str, Any]:
    """Poll the fine-tune until `check(job)` holds (a finished job that does not: fail)."""
    deadline = time.monotonic() + timeout
    job = get(user, job_id)
    while time.monotonic() < deadline:
        job = get(user, job_id)
        if check(job):
            return job
        if job["status"] in FINISHED:
            raise AssertionError(f"fine-tune ended {job['status']} before {what}: {job}")
        time.sleep(0.1)
    raise AssertionError(f"fine-tune still {job['status']} after {timeout}s, wanted {what}")


def wait_finished(user: UserSession, job_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = get(user, job_id)
        if job["status"] in FINISHED:
            return job
        time.sleep(0.2)
    raise AssertionError(f"fine-tune {job_id} not finished after {timeout}s")


def download(user: UserSession, url: str, **params: Any) -> httpx.Response:
    with user.http() as http:
        return http.get(url, params=params)


def readable_tree(path: Path) -> None:
    """Let a sandboxed trainer (another uid under a root server) read `path`."""
    path.chmod(0o755)
    for item in path.rglob("*"):
        item.chmod(0o755 if item.is_dir() else 0o644)
