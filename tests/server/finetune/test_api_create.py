"""`/finetune/models|status|presets` and `POST /finetune/jobs`: what a create accepts and why
it refuses (the fine-tunes stay `pending` on this server: no trainer runs)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.server.finetune.ftsupport import (
    ALPACA,
    FT,
    LLAMA,
    SHAREGPT,
    create,
    create_from,
    get,
    jsonl,
    upload,
)
from tests.support import UserSession


def _msg(body: dict[str, object]) -> str:
    details = body["details"]
    assert isinstance(details, list)
    return str(details[0]["msg"])


def test_list_models(ft_user: UserSession) -> None:
    with ft_user.http() as http:
        models = http.get(f"{FT}/models").json()["models"]
    ids = [m["id"] for m in models]
    assert len(ids) == len(set(ids)) == 11  # the platform's ten and Llama 3 70B (the sprint's)
    assert LLAMA in ids and "unsloth/Qwen2-7B-bnb-4bit" in ids
    assert "unsloth/llama-3-70b-bnb-4bit" in ids
    llama = next(m for m in models if m["id"] == LLAMA)
    assert llama == {
        "id": LLAMA,
        "name": "Llama 3 8B",
        "parameters": "8B",
        "min_vram": "16GB",
        "recommended_gpu": "RTX 4090, A100",
        "category": "light",
        "training_speed": "fast",
    }


def test_status_says_which_executor_can_run_and_why_not(ft_user: UserSession) -> None:
    with ft_user.http() as http:
        status = http.get(f"{FT}/status").json()
    assert set(status) >= {"skypilot_available", "vast_available", "finetune_available", "message"}
    assert status["vast_available"] is False and status["skypilot_available"] is False
    assert status["executors"]["skypilot"]["reasons"] == [
        "this control plane runs fine-tunes locally (start it with --executor=skypilot)"
    ]
    local = status["executors"]["local"]
    assert status["finetune_available"] is local["available"]
    if not local["available"]:
        assert local["reasons"] and status["message"].startswith("No fine-tuning backend")


def test_presets_and_explicit_values_win(ft_user: UserSession) -> None:
    with ft_user.http() as http:
        presets = {p["name"]: p for p in http.get(f"{FT}/presets").json()["presets"]}
    assert set(presets) == {"chat", "instruct", "code", "quick-test"}
    job = create_from(ft_user, ALPACA, preset="code", config={"epochs": 1})
    code = presets["code"]["config"]
    assert job["preset"] == "code"
    assert job["config"]["epochs"] == 1  # given: wins over the preset's 3
    assert job["config"]["lora_rank"] == code["lora_rank"] == 32
    assert job["config"]["learning_rate"] == code["learning_rate"]
    body = create_from(ft_user, ALPACA, preset="fast", expect=422)
    assert _msg(body).startswith("unknown preset 'fast'; use one of")


def test_lora_configuration_is_stored_nested(ft_user: UserSession) -> None:
    config = {
        "lora_rank": 8,
        "lora_alpha": 32,
        "learning_rate": 1e-4,
        "epochs": 2,
        "batch_size": 1,
        "gradient_accumulation_steps": 2,
        "max_seq_length": 512,
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "target_modules": ["q_proj", "v_proj"],
    }
    job = create_from(ft_user, ALPACA, config=config)
    assert job["status"] == "pending"
    assert {k: job["config"][k] for k in config} == config
    assert job["config"]["output_dir"] == "/workspace/outputs"
    assert (job["current_step"], job["total_steps"], job["progress_percent"]) == (0, 0, 0.0)


@pytest.mark.parametrize(
    ("flat", "nested"),
    [
        ("epochs", "config.epochs"),
        ("lr", "config.learning_rate"),
        ("lora_rank", "config.lora_rank"),
    ],
)
def test_flat_hyper_parameters_are_a_422_naming_the_nested_field(
    ft_user: UserSession, flat: str, nested: str
) -> None:
    body = create_from(ft_user, ALPACA, expect=422, **{flat: 3})
    assert body["details"][0]["loc"] == ["body", flat]
    assert _msg(body) == f"{flat}: put it under {nested} (hyper-parameters are nested in `config`)"


def test_unknown_config_key_and_range(ft_user: UserSession) -> None:
    assert create_from(ft_user, ALPACA, config={"epoch": 2}, expect=422)["details"][0]["loc"] == [
        "body",
        "config",
        "epoch",
    ]
    body = create_from(ft_user, ALPACA, config={"lora_rank": 2}, expect=422)
    assert body["details"][0]["loc"] == ["body", "config", "lora_rank"]


def test_unknown_dataset_source_is_a_422(ft_user: UserSession) -> None:
    body = create_from(ft_user, ALPACA, dataset_source="s3", expect=422)
    assert body["details"][0]["loc"] == ["body", "dataset_source"]


def test_unknown_base_model_suggests_close_ones(ft_user: UserSession) -> None:
    body = create_from(ft_user, ALPACA, base_model="unsloth/llama-3-8b", expect=422)
    assert body["details"][0]["loc"] == ["body", "base_model"]
    assert _msg(body).startswith(
        "unknown base model 'unsloth/llama-3-8b'; did you mean unsloth/llama-3-8b-bnb-4bit"
    )


def test_a_model_of_the_servers_cache_is_accepted(ft_user: UserSession, api_hf_home: Path) -> None:
    snapshot = api_hf_home / "hub" / "models--acme--tiny-chat" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    assert (
        create_from(ft_user, ALPACA, base_model="acme/tiny-chat")["base_model"] == "acme/tiny-chat"
    )
    body = create_from(ft_user, ALPACA, base_model="acme/tiny-chap", expect=422)
    assert "did you mean acme/tiny-chat" in _msg(body)


def test_create_with_sharegpt_takes_the_uploads_format(ft_user: UserSession) -> None:
    job = create_from(ft_user, SHAREGPT)  # dataset_format left out: the upload's own
    assert job["dataset_format"] == "sharegpt"
    body = create_from(ft_user, SHAREGPT, dataset_format="alpaca", expect=422)
    assert body["details"][0]["loc"] == ["body", "dataset_format"]
    assert "uploaded as sharegpt" in _msg(body)


def test_dataset_path_must_be_the_callers_own_upload(
    ft_user: UserSession, make_ft_user: Callable[[], UserSession]
) -> None:
    theirs = upload(make_ft_user(), jsonl(ALPACA))["dataset_path"]
    for source, path in (("upload", theirs), ("existing", theirs), ("upload", "/etc/passwd")):
        body = create(
            ft_user,
            expect=422,
            name="x",
            base_model=LLAMA,
            dataset_source=source,
            dataset_path=path,
        )
        assert body["details"][0]["loc"] == ["body", "dataset_path"]
        assert "is not a dataset you uploaded" in _msg(body)


def test_huggingface_dataset_from_the_cache_only(ft_user: UserSession, api_hf_home: Path) -> None:
    body = create(
        ft_user,
        expect=422,
        name="x",
        base_model=LLAMA,
        dataset_source="huggingface",
        dataset_path="acme/missing",
    )
    assert "not in this server's cache" in _msg(body)
    snapshot = api_hf_home / "hub" / "datasets--acme--chats" / "snapshots" / "r1" / "data"
    snapshot.mkdir(parents=True)
    (snapshot / "train.jsonl").write_bytes(jsonl(SHAREGPT))
    job = create(
        ft_user, name="x", base_model=LLAMA, dataset_source="huggingface", dataset_path="acme/chats"
    )
    assert (job["dataset_source"], job["dataset_format"]) == ("huggingface", "sharegpt")


@pytest.fixture
def dataset_url() -> Iterator[str]:
    content = jsonl(ALPACA)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            wanted = "Basic " + base64.b64encode(b"alice:s3cret-value").decode()
            if self.path == "/private.jsonl" and self.headers.get("Authorization") != wanted:
                self.send_response(401)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/train.jsonl"
    httpd.shutdown()
    httpd.server_close()


def test_url_dataset_fetched_or_a_clear_refusal(ft_user: UserSession, dataset_url: str) -> None:
    job = create(
        ft_user, name="x", base_model=LLAMA, dataset_source="url", dataset_path=dataset_url
    )
    assert job["dataset_format"] == "alpaca"
    body = create(
        ft_user,
        expect=422,
        name="x",
        base_model=LLAMA,
        dataset_source="url",
        dataset_path="http://127.0.0.1:9/none.jsonl",
    )
    assert _msg(body).startswith("could not fetch the dataset at http://127.0.0.1:9/none.jsonl")


def test_list_filters_pages_and_counts_newest_first(ft_user: UserSession) -> None:
    path = upload(ft_user, jsonl(ALPACA))["dataset_path"]
    ids = [
        create(ft_user, name=f"n{i}", base_model=LLAMA, dataset_source="upload", dataset_path=path)[
            "id"
        ]
        for i in range(3)
    ]
    with ft_user.http() as http:
        http.post(f"{FT}/jobs/{ids[0]}/cancel").raise_for_status()
        everything = http.get(f"{FT}/jobs").json()
        page = http.get(f"{FT}/jobs", params={"limit": 1, "offset": 1}).json()
        pending = http.get(f"{FT}/jobs", params={"status": "pending"}).json()
        bad = http.get(f"{FT}/jobs", params={"status": "done"})
    assert [j["id"] for j in everything["jobs"]] == ids[::-1] and everything["count"] == 3
    assert [j["id"] for j in page["jobs"]] == [ids[1]] and page["count"] == 3
    assert {j["id"] for j in pending["jobs"]} == set(ids[1:]) and pending["count"] == 2
    assert bad.status_code == 422


def test_cancel_a_pending_fine_tune_then_delete_it(ft_user: UserSession) -> None:
    job = create_from(ft_user, ALPACA)
    with ft_user.http() as http:
        cancelled = http.post(f"{FT}/jobs/{job['id']}/cancel")
        again = http.post(f"{FT}/jobs/{job['id']}/cancel")
        assert get(ft_user, job["id"])["status"] == "cancelled"
        deleted = http.delete(f"{FT}/jobs/{job['id']}")
        gone = http.get(f"{FT}/jobs/{job['id']}")
    assert cancelled.json() == {"success": True, "message": f"Job {job['id']} cancelled"}
    assert again.status_code == 400
    assert deleted.json() == {"success": True, "message": f"Job {job['id']} deleted"}
    assert gone.status_code == 404


def test_user_b_cannot_see_or_touch_as_fine_tunes(
    ft_user: UserSession, make_ft_user: Callable[[], UserSession]
) -> None:
    job = create_from(ft_user, ALPACA)
    other = make_ft_user()
    base = f"{FT}/jobs/{job['id']}"
    with other.http() as http:
        assert http.get(f"{FT}/jobs").json() == {"jobs": [], "count": 0}
        for method, path in [
            ("GET", base),
            ("GET", f"{base}?refresh=true"),
            ("GET", f"{base}/logs"),
            ("GET", f"{base}/outputs"),
            ("GET", f"{base}/outputs?archive=tar.gz"),
            ("POST", f"{base}/cancel"),
            ("POST", f"{base}/refresh"),
            ("DELETE", base),
        ]:
            answer = http.request(method, path)
            assert answer.status_code == 404, (method, path, answer.text)
            assert answer.json() == {"error": f"Job {job['id']} not found"}
        answer = http.post(f"{base}/deploy", json={})
        assert answer.status_code == 404
    assert get(ft_user, job["id"])["status"] == "pending"


def test_config_json_of_the_trainer(ft_user: UserSession, ft_api_server: object) -> None:
    job = create_from(ft_user, ALPACA, config={"max_steps": 3, "seed": 7, "epochs": 2})
    directory = ft_api_server.data_dir / "sandboxes" / "finetunes" / job["id"]  # type: ignore[attr-defined]
    config = json.loads((directory / "inputs" / "config.json").read_text())
    assert config["base_model"] == LLAMA
    assert config["dataset_format"] == "alpaca"
    assert (config["seed"], config["max_steps"], config["config"]["epochs"]) == (7, 3, 2)
    assert config["dataset_path"].endswith("/input/dataset.jsonl")
    assert config["progress_path"] == config["output_dir"] + "/progress.jsonl"
    assert (directory / "inputs" / "dataset.jsonl").read_bytes() == jsonl(ALPACA)


def test_deploy_needs_a_completed_fine_tune(ft_user: UserSession) -> None:
    job = create_from(ft_user, ALPACA)
    with ft_user.http() as http:
        answer = http.post(f"{FT}/jobs/{job['id']}/deploy", json={"port": 8123})
        bad_port = http.post(f"{FT}/jobs/{job['id']}/deploy", json={"port": 80})
    assert answer.status_code == 400
    assert answer.json() == {
        "error": f"Job {job['id']} is pending: only a completed fine-tune can be deployed"
    }
    assert bad_port.status_code == 422


def test_a_retried_create_with_the_same_idempotency_key_makes_one_fine_tune(
    ft_user: UserSession,
) -> None:
    path = upload(ft_user, jsonl(ALPACA))["dataset_path"]
    body = {"name": "once", "base_model": LLAMA, "dataset_source": "upload", "dataset_path": path}
    with ft_user.http() as http:
        first = http.post(f"{FT}/jobs", json=body, headers={"Idempotency-Key": "ft-key-1"})
        again = http.post(f"{FT}/jobs", json=body, headers={"Idempotency-Key": "ft-key-1"})
        listed = http.get(f"{FT}/jobs").json()
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    assert listed["count"] == 1


def test_url_credentials_are_sent_but_not_stored(ft_user: UserSession, dataset_url: str) -> None:
    private = dataset_url.replace("/train.jsonl", "/private.jsonl")
    with_secret = private.replace("http://", "http://alice:s3cret-value@")
    job = create(
        ft_user, name="x", base_model=LLAMA, dataset_source="url", dataset_path=with_secret
    )
    assert job["dataset_path"] == private
    body = create(
        ft_user,
        expect=422,
        name="x",
        base_model=LLAMA,
        dataset_source="url",
        dataset_path=private.replace("http://", "http://alice:wrong-value@"),
    )
    assert "401" in _msg(body) and "wrong-value" not in json.dumps(body)
