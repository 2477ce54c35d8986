"""`dumont fmt`: canonical layout, comments kept, meaning never changed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dumont_plan.cli.app import run
from dumont_plan.errors import SpecError
from dumont_plan.loader.fmt import format_spec, format_text

MESSY = (
    "# top comment\n"
    "version:   1\n"
    "project : demo   \n"
    "\n"
    "\n"
    "jobs:\n"
    "    # the hello job\n"
    "    hello:\n"
    "        command: |\n"
    "            echo hello   \n"
    "              indented\n"
    "        pip_packages:\n"
    "        -   numpy\n"
    "        output_paths: [/workspace/output,\n"
    "              /workspace/other]\n"
    "    train:\n"
    '        command: "python train.py\n'
    '           --epochs 3"\n'
    "        depends_on:\n"
    "            - job.hello   # after hello\n"
    "\n\n\n"
)
TIDY = (
    "# top comment\n"
    "version: 1\n"
    "project: demo\n"
    "\n"
    "jobs:\n"
    "  # the hello job\n"
    "  hello:\n"
    "    command: |\n"
    "      echo hello   \n"
    "        indented\n"
    "    pip_packages:\n"
    "    - numpy\n"
    "    output_paths: [/workspace/output,\n"
    "          /workspace/other]\n"
    "  train:\n"
    '    command: "python train.py\n'
    '           --epochs 3"\n'
    "    depends_on:\n"
    "      - job.hello   # after hello\n"
)


def test_format_golden() -> None:
    assert format_spec(MESSY, "dumont.yaml") == TIDY
    assert format_spec(TIDY, "dumont.yaml") == TIDY
    assert yaml.safe_load(MESSY) == yaml.safe_load(TIDY)


def test_tabs_in_indentation_are_an_error() -> None:
    with pytest.raises(SpecError) as info:
        format_text("jobs:\n\ta: 1\n", "dumont.yaml")
    assert str(info.value) == (
        "dumont.yaml:2:1 tab character in indentation; YAML indents with spaces only; "
        "replace the tab with spaces"
    )


def test_repo_specs_are_formatted() -> None:
    root = Path(__file__).resolve().parent.parent.parent
    for path in [root / "dumontfile", *sorted((root / "examples").rglob("*.yaml"))]:
        text = path.read_text(encoding="utf-8")
        assert format_spec(text, path.name) == text, path


def test_fmt_check_then_fmt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "dumont.yaml").write_text(MESSY, encoding="utf-8")
    (tmp_path / "dumont.yaml").chmod(0o640)
    monkeypatch.chdir(tmp_path)
    assert run(["fmt", "--check"]) == 1
    out, err = capsys.readouterr()
    assert out == "would reformat dumont.yaml\n"
    assert err == "Error: 1 file not in canonical format; run `dumont fmt`\n"
    assert (tmp_path / "dumont.yaml").read_text(encoding="utf-8") == MESSY
    assert run(["fmt", "--diff"]) == 0
    out, _ = capsys.readouterr()
    assert "-version:   1\n" in out and "+version: 1\n" in out
    assert "formatted" not in out.replace("(formatted)", "")  # --diff only shows
    assert (tmp_path / "dumont.yaml").read_text(encoding="utf-8") == MESSY
    assert run(["fmt"]) == 0
    assert capsys.readouterr().out == "formatted dumont.yaml\n"
    assert (tmp_path / "dumont.yaml").read_text(encoding="utf-8") == TIDY
    assert os.stat(tmp_path / "dumont.yaml").st_mode & 0o777 == 0o640
    assert run(["fmt", "--check"]) == 0
    assert capsys.readouterr() == ("", "")


def test_a_syntax_error_is_reported_not_formatted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "dumont.yaml").write_text("a: [1\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert run(["fmt"]) == 1
    assert capsys.readouterr().err.startswith("Error: dumont.yaml:1:4 YAML syntax error")


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.text("ab :#-'\"{}[],|>\n\t", max_size=12),
)
keys = st.text("abcxyz_-", min_size=1, max_size=6)
trees = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.dictionaries(keys, trees, min_size=1, max_size=5),
    indent=st.sampled_from([2, 3, 4, 6]),
    flow=st.booleans(),
    width=st.sampled_from([20, 80]),
)
def test_formatting_never_changes_the_data(
    data: dict[str, object], indent: int, flow: bool, width: int
) -> None:
    text = yaml.safe_dump(data, indent=indent, default_flow_style=flow or None, width=width)
    try:
        formatted = format_spec(text, "x.yaml")
    except SpecError as exc:  # refusing is allowed; changing the meaning is not
        assert "cannot be formatted safely" in str(exc)
        return
    assert yaml.safe_load(formatted) == yaml.safe_load(text)  # (PyYAML may not round-trip)
    assert format_spec(formatted, "x.yaml") == formatted
