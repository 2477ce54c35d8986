"""Copying SkyPilot outputs back (`sky_outputs`): the setting is checked, each output path is a
sub-folder of the location, and a copy brings back regular files only. The clouds' own copy
tools (`aws`, `gsutil`) cannot reach a bucket here: a stand-in script on PATH plays them, at
the command-line boundary only."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dumont_plan.server.provider import sky_outputs
from dumont_plan.server.settings import ServerSettings

# A stand-in `aws`/`gsutil`: records its arguments, then writes into its last argument (the
# staging folder) a file, a nested file and a symlink to a file outside.
STAND_IN = """#!/bin/sh
echo "$@" > "$STAND_IN_ARGS"
[ -n "$STAND_IN_FAIL" ] && { echo "An error occurred (AccessDenied)" >&2; exit 1; }
for last; do :; done
mkdir -p "$last/lora_model"
printf weights > "$last/lora_model/adapter.bin"
printf '{}' > "$last/stats.json"
ln -s /etc/passwd "$last/leak"
"""


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("aws", "gsutil"):
        script = bin_dir / name
        script.write_text(STAND_IN)
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STAND_IN_ARGS", str(tmp_path / "args"))
    return tmp_path / "args"


@pytest.mark.parametrize(
    ("url", "tool"),
    [("s3://bucket/dumont/finetune-1", "s3 sync"), ("gs://bucket/dumont/finetune-1", "rsync -r")],
)
def test_a_bucket_is_copied_with_its_clouds_tool_regular_files_only(
    stand_in: Path, tmp_path: Path, url: str, tool: str
) -> None:
    outputs = tmp_path / "job" / "outputs"
    assert sky_outputs.download(url, outputs) == 2
    assert tool in stand_in.read_text() and url in stand_in.read_text()
    assert (outputs / "lora_model" / "adapter.bin").read_text() == "weights"
    assert sorted(p.name for p in outputs.rglob("*")) == ["adapter.bin", "lora_model", "stats.json"]
    assert [p.name for p in (tmp_path / "job").iterdir()] == ["outputs"]  # no staging left


def test_a_failed_copy_says_why(
    stand_in: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAND_IN_FAIL", "1")
    with pytest.raises(RuntimeError, match=r"aws s3 sync exited with 1: .*AccessDenied"):
        sky_outputs.download("s3://bucket/x", tmp_path / "outputs")


def test_a_file_location_copies_regular_files(tmp_path: Path) -> None:
    source = tmp_path / "bucket" / "job-1" / "output"
    source.mkdir(parents=True)
    (source / "model.bin").write_bytes(b"m")
    (source / "leak").symlink_to("/etc/passwd")
    outputs = tmp_path / "outputs"
    assert sky_outputs.download(f"file://{tmp_path}/bucket/job-1", outputs) == 1
    assert [p.relative_to(outputs).as_posix() for p in outputs.rglob("*")] == [
        "output",
        "output/model.bin",
    ]


def test_each_output_folder_is_a_sub_folder_of_the_location() -> None:
    mounts = sky_outputs.mounts("s3://b/p/job-1", ["/workspace/output", "/workspace/a/b", "/etc"])
    assert mounts == {
        "/workspace/output": {"source": "s3://b/p/job-1/output", "mode": "MOUNT_CACHED"},
        "/workspace/a/b": {"source": "s3://b/p/job-1/a/b", "mode": "MOUNT_CACHED"},
    }


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", None),
        ("s3://bucket/prefix", None),
        ("gs://bucket", None),
        ("file:///srv/shared", None),
        ("azure://container/x", "use s3://bucket/prefix, gs://bucket/prefix or file:///dir"),
        ("s3://", "use s3://bucket/prefix"),
        ("bucket/prefix", "use s3://bucket/prefix"),
    ],
)
def test_the_setting_is_checked(tmp_path: Path, value: str, problem: str | None) -> None:
    settings = ServerSettings(data_dir=tmp_path, sky_outputs=value)
    found = sky_outputs.setting_problem(settings)
    assert (found is None) if problem is None else (problem in str(found))
    location = sky_outputs.location(settings, "job-1")
    assert location == (f"{value}/job-1" if value and problem is None else None)


def test_the_server_refuses_to_start_with_a_bad_location(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dumont_plan.server", "--data-dir", str(tmp_path)],
        env={"DUMONT_SERVER_SKY_OUTPUTS": "ftp://host/x", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "DUMONT_SERVER_SKY_OUTPUTS='ftp://host/x': use s3://bucket/prefix" in done.stderr
