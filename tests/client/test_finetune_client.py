"""FinetuneAPI against a real local control plane over loopback (fine-tunes stay pending)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from dumont_plan.client.finetune import UPLOAD_CHUNK, FinetuneAPI
from dumont_plan.errors import NotFoundError, UnprocessableError
from tests.support import LocalServer, UserSession, new_user

LLAMA = "unsloth/llama-3-8b-bnb-4bit"
RECORD = {"instruction": "Say hi.", "input": "", "output": "Hi!"}


@pytest.fixture(scope="module")
def idle_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    env = {"DUMONT_SERVER_MAX_RUNNING_FINETUNES": "0"}
    server = LocalServer(tmp_path_factory.mktemp("ft-client-server"), env=env).start()
    yield server
    server.stop()


@pytest.fixture
def ft(idle_server: LocalServer) -> UserSession:
    return new_user(idle_server.url)


def big_dataset(tmp_path: Path, records: int) -> Path:
    path = tmp_path / "big.jsonl"
    path.write_text(
        "".join(json.dumps({**RECORD, "input": f"#{i}"}) + "\n" for i in range(records))
    )
    return path


def test_upload_streams_the_file_and_reports_progress(ft: UserSession, tmp_path: Path) -> None:
    path = big_dataset(tmp_path, 4000)
    size = path.stat().st_size
    assert size > 3 * UPLOAD_CHUNK
    seen: list[tuple[int, int]] = []
    answer = ft.client.finetune.upload(
        path, dataset_format="alpaca", progress=lambda sent, total: seen.append((sent, total))
    )
    assert (answer.records, answer.format) == (4000, "alpaca")
    assert answer.dataset_path.endswith("big.jsonl") and len(answer.sha256 or "") == 64
    assert len(seen) >= 3  # chunk by chunk, not the file at once
    assert all(total == size for _, total in seen)
    assert [sent for sent, _ in seen] == sorted(sent for sent, _ in seen)
    assert seen[-1][0] == size


def test_a_refused_upload_is_a_422_naming_the_line(ft: UserSession, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(RECORD) + "\n" + json.dumps({"instruction": "x"}) + "\n")
    with pytest.raises(UnprocessableError) as caught:
        ft.client.finetune.upload(path, dataset_format="alpaca")
    assert "line 2" in str(caught.value)


def test_create_is_repeat_safe_with_an_idempotency_key(ft: UserSession, tmp_path: Path) -> None:
    uploaded = ft.client.finetune.upload(big_dataset(tmp_path, 3)).dataset_path
    fields = {
        "name": "once",
        "base_model": LLAMA,
        "dataset_source": "upload",
        "dataset_path": uploaded,
        "config": {"epochs": 2},
    }
    first = ft.client.finetune.create(idempotency_key="key-1", **fields)
    again = ft.client.finetune.create(idempotency_key="key-1", **fields)
    assert again.id == first.id and first.status == "pending"
    assert first.config["epochs"] == 2 and first.raw["id"] == first.id
    assert [job.id for job in ft.client.finetune.list_all()] == [first.id]


def test_iter_all_pages_through_every_fine_tune(ft: UserSession, tmp_path: Path) -> None:
    uploaded = ft.client.finetune.upload(big_dataset(tmp_path, 3)).dataset_path
    made = [
        ft.client.finetune.create(
            name=f"n{i}", base_model=LLAMA, dataset_source="upload", dataset_path=uploaded
        ).id
        for i in range(5)
    ]
    api = FinetuneAPI(ft.client.transport, page_size=2)
    assert [job.id for job in api.iter_all()] == made[::-1]  # newest first, each once
    assert [job.id for job in api.iter_all(status="running")] == []
    page = ft.client.finetune.list(limit=2)
    assert (len(page.jobs), page.count) == (2, 5)


def test_someone_elses_fine_tune_is_not_found(
    ft: UserSession, idle_server: LocalServer, tmp_path: Path
) -> None:
    uploaded = ft.client.finetune.upload(big_dataset(tmp_path, 3)).dataset_path
    job = ft.client.finetune.create(
        name="mine", base_model=LLAMA, dataset_source="upload", dataset_path=uploaded
    )
    other = new_user(idle_server.url)
    for call in (
        other.client.finetune.get,
        other.client.finetune.logs,
        other.client.finetune.outputs,
    ):
        with pytest.raises(NotFoundError):
            call(job.id)
