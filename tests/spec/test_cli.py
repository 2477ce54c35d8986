"""`dumont validate`: output for people and for scripts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dumont_plan.cli.app import run


@pytest.fixture
def spec_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("DUMONT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_validate_counts_resources(spec_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (spec_dir / "dumont.yaml").write_text(
        "project: demo\njobs:\n  a: {}\n  b: {}\ninstances:\n  box: {}\n", encoding="utf-8"
    )
    assert run(["validate"]) == 0
    assert capsys.readouterr() == (
        "Valid: 3 resources (2 jobs, 1 instance) in project demo (dumont.yaml).\n",
        "",
    )
    assert run(["validate", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "valid": True,
        "project": "demo",
        "files": ["dumont.yaml"],
        "resources": ["instance.box", "job.a", "job.b"],
        "errors": [],
    }


def test_validate_variables_from_options(
    spec_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (spec_dir / "spec.yaml").write_text(
        'project: demo\njobs:\n  a: {num_gpus: "{{ var.n }}"}\n', encoding="utf-8"
    )
    (spec_dir / "vars.json").write_text('{"n": 9}', encoding="utf-8")
    assert run(["validate", "-f", "spec.yaml", "--var", "n=2"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("DUMONT_VAR_n", "3")
    assert run(["validate", "-f", "spec.yaml"]) == 0
    capsys.readouterr()
    assert run(["validate", "-f", "spec.yaml", "--var-file", "vars.json"]) == 1
    assert capsys.readouterr().err == (
        "Error: spec.yaml:3:17 jobs.a.num_gpus: 9 is above the limit of 8; use 1–8.\n"
    )


def test_validate_json_lists_every_error(
    spec_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (spec_dir / "dumont.yaml").write_text(
        "project: demo\njobs:\n  a: {num_gpus: 0, gpu: x}\n", encoding="utf-8"
    )
    assert run(["validate", "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result == {
        "valid": False,
        "errors": [
            {
                "file": "dumont.yaml",
                "line": 3,
                "col": 17,
                "message": "dumont.yaml:3:17 jobs.a.num_gpus: 0 is below the minimum of 1; "
                "use 1–8.",
            },
            {
                "file": "dumont.yaml",
                "line": 3,
                "col": 20,
                "message": "dumont.yaml:3:20 jobs.a.gpu: unknown field; did you mean 'gpu_type'?",
            },
        ],
    }
    assert run(["validate"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "Error: dumont.yaml:3:17 jobs.a.num_gpus: 0 is below the minimum of 1; use 1–8.",
        "Error: dumont.yaml:3:20 jobs.a.gpu: unknown field; did you mean 'gpu_type'?",
    ]


def test_every_spec_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("validate", "fmt", "schema"):
        assert run([command, "--help"]) == 0
        assert "Usage: dumont " + command in capsys.readouterr().out
