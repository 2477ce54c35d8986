"""The job runner's own pieces, in process: the secret-masking log writer and the Hugging Face
step when the optional `huggingface_hub` dependency is missing."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from dumont_plan.server.provider.joblog import LogWriter
from dumont_plan.server.provider.runner import hf_download


def test_the_log_writer_masks_a_secret_split_across_chunks(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "job.log", ["s3cr3t-value"])
    writer.feed(b"one s3cr")
    writer.feed(b"3t-value two\npartial s3cr3t")
    writer.feed(b"-value")
    writer.close()
    assert (tmp_path / "job.log").read_bytes() == b"one *** two\npartial ***"


def test_a_missing_huggingface_hub_fails_the_step_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    read_fd, write_fd = os.pipe()
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # what an absent package looks like
    monkeypatch.setenv("DUMONT_CONTROL_FD", str(write_fd))

    code = hf_download("org/model", "main", str(tmp_path / "model"))

    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as control:
        reported = control.read().decode()
    message = (
        "huggingface_hub is not installed on the control plane; "
        "install it with: pip install 'dumont-plan[hf]'"
    )
    assert code == 3
    assert reported == f"error {message}\n"
    assert capsys.readouterr().err == f"[dumont] {message}\n"
    assert not (tmp_path / "model").exists()
