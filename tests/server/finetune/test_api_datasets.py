"""`POST /finetune/jobs/upload-dataset`: streamed to disk, every record checked, kept per user."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

from tests.server.finetune.conftest import DATASET_CAP
from tests.server.finetune.ftsupport import ALPACA, FT, SHAREGPT, jsonl, upload
from tests.support import LocalServer, UserSession


def _details(body: dict[str, object]) -> dict[str, object]:
    assert body["error"] == "Validation error", body
    details = body["details"]
    assert isinstance(details, list) and len(details) == 1, body
    detail = details[0]
    assert isinstance(detail, dict)
    return detail


def _user_files(server: LocalServer) -> list[Path]:
    root = server.data_dir / "datasets"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def test_upload_jsonl(ft_user: UserSession) -> None:
    content = jsonl(ALPACA * 3)
    answer = upload(ft_user, content, "train.jsonl")
    assert answer["success"] is True
    assert answer["records"] == 6
    assert answer["format"] == "alpaca"
    assert answer["sha256"] == hashlib.sha256(content).hexdigest()
    stored = Path(answer["dataset_path"])
    assert stored.name.endswith("_train.jsonl")
    assert stored.read_bytes() == content


def test_upload_json(ft_user: UserSession) -> None:
    content = json.dumps(SHAREGPT, indent=2).encode()
    answer = upload(ft_user, content, "chat.json")
    assert (answer["records"], answer["format"]) == (2, "sharegpt")
    assert Path(answer["dataset_path"]).read_bytes() == content


def test_upload_raw_and_declared_format(ft_user: UserSession) -> None:
    raw = jsonl([{"text": "one two three"}, {"text": "four five"}])
    assert upload(ft_user, raw, "raw.jsonl", fmt="raw")["format"] == "raw"
    with ft_user.http() as http:  # the format may also come as a query parameter
        answer = http.post(
            f"{FT}/jobs/upload-dataset", params={"format": "raw"}, files={"file": ("r.jsonl", raw)}
        )
    assert answer.status_code == 200 and answer.json()["format"] == "raw", answer.text


def test_a_bad_record_is_a_422_naming_its_line_and_field(ft_user: UserSession) -> None:
    content = jsonl(ALPACA) + b"\n" + jsonl([{"instruction": "No answer."}])
    detail = _details(upload(ft_user, content, "bad.jsonl", expect=422))
    assert detail["loc"] == ["body", "file", "line", 4, "output"]
    assert detail["msg"] == (
        'bad.jsonl line 4: record 3 has no "output"; an alpaca record is {"instruction": ..., '
        '"input": ... (optional), "output": ...}'
    )


def test_a_record_of_another_format_than_declared(ft_user: UserSession) -> None:
    detail = _details(upload(ft_user, jsonl(ALPACA), "a.jsonl", fmt="sharegpt", expect=422))
    assert detail["loc"] == ["body", "file", "line", 1, "conversations"]
    assert 'line 1: record 1 has no "conversations"' in str(detail["msg"])


def test_a_bad_turn_in_a_json_array_names_its_line(ft_user: UserSession) -> None:
    records = [SHAREGPT[0], {"conversations": [{"from": "robot", "value": "beep"}]}]
    content = json.dumps(records, indent=1).encode()
    detail = _details(upload(ft_user, content, "chat.json", expect=422))
    line = content.decode().splitlines().index(" {", 2) + 1  # where the second record starts
    assert detail["loc"] == ["body", "file", "line", line, "conversations[0].from"]
    assert "use one of human, user, gpt, assistant, system" in str(detail["msg"])


def test_invalid_json_names_its_line(ft_user: UserSession) -> None:
    content = jsonl(ALPACA) + b'{"instruction": "x", "output": \n'
    detail = _details(upload(ft_user, content, "broken.jsonl", expect=422))
    assert detail["loc"] == ["body", "file", "line", 3]
    assert str(detail["msg"]).startswith("broken.jsonl line 3 is not valid JSON")


def test_unknown_shape_and_empty_file(ft_user: UserSession) -> None:
    detail = _details(upload(ft_user, jsonl([{"prompt": "a"}]), "x.jsonl", expect=422))
    assert "record 1 matches no dataset format" in str(detail["msg"])
    detail = _details(upload(ft_user, b"\n\n", "empty.jsonl", expect=422))
    assert "holds no records" in str(detail["msg"])


def test_file_name_rules_of_the_contract(ft_user: UserSession) -> None:
    answer = upload(ft_user, jsonl(ALPACA), "data.csv", expect=400)
    assert answer["error"].startswith("Only JSON and JSONL files are supported")
    with ft_user.http() as http:
        missing = http.post(f"{FT}/jobs/upload-dataset", data={"format": "alpaca"})
    assert missing.status_code == 422, missing.text


def test_bigger_than_a_request_body_streams_to_disk(ft_user: UserSession) -> None:
    record = {"instruction": "Repeat.", "output": "x" * 1000}
    content = jsonl([record] * 2000)  # ~2 MB: past the 1 MiB cap of JSON bodies
    assert len(content) > 1024 * 1024
    assert upload(ft_user, content, "big.jsonl")["records"] == 2000


def test_over_the_cap_is_a_413_and_leaves_nothing(
    ft_api_server: LocalServer, ft_user: UserSession
) -> None:
    before = _user_files(ft_api_server)
    content = jsonl([{"text": "y" * 1000}] * (DATASET_CAP // 1000 + 10))
    answer = upload(ft_user, content, "huge.jsonl", expect=413)
    assert "larger than this server's limit" in answer["error"]
    assert _user_files(ft_api_server) == before


def test_a_refused_file_leaves_nothing(ft_api_server: LocalServer, ft_user: UserSession) -> None:
    before = _user_files(ft_api_server)
    upload(ft_user, jsonl(ALPACA) + b"[1]\n", "bad.jsonl", expect=422)
    assert _user_files(ft_api_server) == before


def test_uploads_are_private_files(ft_user: UserSession) -> None:
    stored = Path(upload(ft_user, jsonl(ALPACA), "p.jsonl")["dataset_path"])
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(stored.parent.parent.stat().st_mode) == 0o700
