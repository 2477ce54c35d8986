"""Artifacts generated from the models stay in sync; every shipped spec validates."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dumont_plan.cli.app import run
from dumont_plan.loader import load_stack
from dumont_plan.spec.schema import MARK_END, MARK_START, schema_text, spec_reference
from tests.support import cli_env, run_cli

ROOT = Path(__file__).resolve().parent.parent.parent
SPECS = [ROOT / "dumontfile", *sorted((ROOT / "examples").glob("*/dumont.yaml"))]
FOLDERS = [p for p in sorted((ROOT / "examples").iterdir()) if p.is_dir() and any(p.glob("*.yaml"))]
REGENERATE = "run scripts/gen-spec"


def test_committed_schema_is_current() -> None:
    committed = (ROOT / "schemas" / "dumont.schema.json").read_text(encoding="utf-8")
    assert committed == schema_text(), f"schemas/dumont.schema.json is stale; {REGENERATE}"


def test_readme_spec_reference_is_current() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index(MARK_START) + len(MARK_START) : readme.index(MARK_END)]
    assert section == "\n" + spec_reference(), f"README spec reference is stale; {REGENERATE}"


def test_schema_command_prints_the_committed_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["schema"]) == 0
    out = capsys.readouterr().out
    assert out == (ROOT / "schemas" / "dumont.schema.json").read_text(encoding="utf-8")
    schema = json.loads(out)
    job = schema["$defs"]["JobSpec"]
    assert job["additionalProperties"] is False
    assert all(prop.get("description") for prop in job["properties"].values())
    assert {"$ref": "#/$defs/JobSpec"}.items() <= schema["$defs"]["Defaults"]["properties"][
        "job"
    ].items()
    assert run(["schema", "--markdown"]) == 0
    assert capsys.readouterr().out == spec_reference()


@pytest.mark.parametrize("path", SPECS + FOLDERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_specs_validate(path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUMONT_")}
    stack = load_stack([path], ROOT, {}, [], env)
    assert stack.resources
    for file in path.glob("*.yaml") if path.is_dir() else [path]:
        first = file.read_text(encoding="utf-8").splitlines()[0]
        prefix = "# yaml-language-server: $schema="
        assert first.startswith(prefix), f"{file}: line 1 must be the schema modeline"
        assert (file.parent / first.removeprefix(prefix)).resolve() == (
            ROOT / "schemas" / "dumont.schema.json"
        )


def test_quick_start_validates_end_to_end(tmp_path: Path) -> None:
    """`dumont validate` in the repo root finds the dumontfile (real subprocess)."""
    result = run_cli(["validate"], cli_env(tmp_path), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "Valid: 3 resources (2 jobs, 1 instance) in project quickstart (dumontfile).\n"
    )
    stack = load_stack(None, ROOT, {}, [], {})
    assert stack.resources["job.train"].refs == ("job.hello",)
    assert stack.resources["instance.devbox"].spec_dict() == {
        "gpu_name": "RTX 4090",
        "speed_tier": "fast",
        "max_price": 2.0,
        "region": "global",
        "state": "running",
    }


def test_each_file_of_a_multi_file_stack_is_valid_alone_for_an_editor() -> None:
    """Editors (yaml-language-server) check one file at a time against the schema."""
    import jsonschema_rs
    import yaml

    validator = jsonschema_rs.validator_for(
        json.loads((ROOT / "schemas" / "dumont.schema.json").read_text(encoding="utf-8"))
    )
    files = [ROOT / "dumontfile", *sorted((ROOT / "examples").rglob("*.yaml"))]
    for file in files:
        if file.parent.name == "ci":
            continue
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
        errors = [e.message for e in validator.iter_errors(data)]
        assert errors == [], f"{file.relative_to(ROOT)}: {errors}"
    jobs_only = yaml.safe_load((ROOT / "examples" / "multi" / "jobs.yaml").read_text())
    assert "project" not in jobs_only  # the case this is about
    assert not validator.is_valid({"project": "x", "jobs": {"a": {"gpu_typo": 1}}})
