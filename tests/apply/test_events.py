"""Apply events: one JSON object per line, None keys left out, secrets redacted."""

from __future__ import annotations

import io
import json
import threading

from dumont_plan.apply.events import ApplyEvent, NdjsonWriter, Redactor


def test_an_event_is_one_json_line_without_empty_keys() -> None:
    out = io.StringIO()
    NdjsonWriter(out)(
        ApplyEvent(
            "change_done", address="job.a", action="create", remote_id="job_1", elapsed=1.23456
        )
    )
    line = out.getvalue()
    assert line.endswith("\n") and line.count("\n") == 1
    data = json.loads(line)
    assert set(data) == {"type", "timestamp", "address", "action", "remote_id", "elapsed"}
    assert data["type"] == "change_done" and data["elapsed"] == 1.235


def test_extra_data_is_merged_into_the_event() -> None:
    event = ApplyEvent("apply_start", data={"changes": 3, "parallelism": 8})
    assert {k: v for k, v in event.to_dict().items() if k != "timestamp"} == {
        "type": "apply_start",
        "changes": 3,
        "parallelism": 8,
    }


def test_the_writer_redacts_every_string_it_writes() -> None:
    redact = Redactor(["s3cr3t-value"])
    out = io.StringIO()
    NdjsonWriter(out, redact)(
        ApplyEvent(
            "change_failed",
            address="job.a",
            error="refused: token s3cr3t-value is bad",
            data={"failed": {"job.a": "s3cr3t-value!"}, "list": ["x s3cr3t-value"]},
        )
    )
    text = out.getvalue()
    assert "s3cr3t-value" not in text
    data = json.loads(text)
    assert data["error"] == "refused: token (sensitive) is bad"
    assert data["failed"] == {"job.a": "(sensitive)!"}
    assert data["list"] == ["x (sensitive)"]


def test_the_longest_secret_is_replaced_first_and_short_values_are_ignored() -> None:
    redact = Redactor(["abcd", "abcdefgh", "ab"])
    assert redact("abcdefgh abcd ab") == "(sensitive) (sensitive) ab"


def test_lines_from_several_threads_never_interleave() -> None:
    out = io.StringIO()
    write = NdjsonWriter(out)

    def burst(n: int) -> None:
        for i in range(200):
            write(ApplyEvent("log", address=f"job.t{n}", line="x" * 500 + str(i)))

    threads = [threading.Thread(target=burst, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = out.getvalue().splitlines()
    assert len(lines) == 800
    assert all(json.loads(line)["type"] == "log" for line in lines)
