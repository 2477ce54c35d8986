"""Issue 15 part 2: what a new user meets in the first hour (offline commands)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from dumont_plan.cli import durations
from dumont_plan.cli.app import terraform_style
from dumont_plan.cli.durations import parse_duration
from tests.support import cli_env, run_cli

SPEC = """\
project: demo
variables:
  gpu: {default: "RTX 4090"}
jobs:
  a: {command: "echo {{ var.gpu }}", gpu_type: "{{ var.gpu }}"}
"""


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    (tmp_path / "dumont.yaml").write_text(SPEC, encoding="utf-8")
    (tmp_path / "v.yaml").write_text("gpu: A100\nregion: EU\n", encoding="utf-8")
    return tmp_path


def test_an_undeclared_variable_is_a_warning_with_did_you_mean(spec_dir: Path) -> None:
    env = cli_env(spec_dir / "home")
    done = run_cli(["validate", "--var", "gpuu=x", "--var-file", "v.yaml"], env, cwd=spec_dir)
    assert done.returncode == 0, done.stderr
    assert "Valid: 1 resource" in done.stdout
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: --var-file v.yaml sets 'region', which no file declares under `variables:`; "
        "it is ignored",
        "warning: --var sets 'gpuu', which no file declares under `variables:`; it is ignored; "
        "did you mean 'gpu'?",
    ]
    declared = run_cli(["validate", "--var", "gpu=A100"], env, cwd=spec_dir)
    assert (declared.returncode, declared.stderr) == (0, "")


def test_terraform_single_dash_flags_are_accepted(spec_dir: Path) -> None:
    env = cli_env(spec_dir / "home")
    done = run_cli(["validate", "-var=gpu=A100", "-var-file", "v.yaml"], env, cwd=spec_dir)
    assert done.returncode == 0, done.stderr
    assert "'region'" in done.stderr  # the var file was read
    assert terraform_style(["apply", "-auto-approve", "-detailed-exitcode", "-f", "x"]) == [
        "apply",
        "--auto-approve",
        "--detailed-exitcode",
        "-f",
        "x",
    ]
    # After `--` nothing is rewritten; unknown single-dash words are left to the parser.
    assert terraform_style(["a", "--", "-out"]) == ["a", "--", "-out"]
    assert terraform_style(["-x", "-outx"]) == ["-x", "-outx"]


def test_piped_output_is_not_wrapped_at_80_columns(spec_dir: Path) -> None:
    env = cli_env(spec_dir / "home")
    del env["COLUMNS"]  # a CI log: not a terminal, no COLUMNS
    done = run_cli(["validate", "--var", "gpuu=x"], env, cwd=spec_dir)
    line = next(x for x in done.stderr.splitlines() if x.startswith("warning:"))
    assert len(line) > 80 and line.endswith("did you mean 'gpu'?")
    env["COLUMNS"] = "60"  # the user's COLUMNS is honoured
    narrow = run_cli(["validate", "--var", "gpuu=x"], env, cwd=spec_dir)
    assert max(len(x) for x in narrow.stderr.splitlines()) <= 60


@pytest.mark.parametrize(
    ("text", "unit", "seconds"),
    [
        ("90", "s", 90),
        ("90", "m", 5400),
        ("90s", "m", 90),
        ("15m", "s", 900),
        ("2h", "s", 7200),
        ("1h30m", "s", 5400),
        ("1.5h", "s", 5400),
        ("1d", "s", 86400),
        (" 2H ", "s", 7200),
    ],
)
def test_durations_take_units_and_bare_numbers_keep_their_unit(
    text: str, unit: str, seconds: float
) -> None:
    assert parse_duration(text, unit) == seconds


@pytest.mark.parametrize("text", ["", "m", "1x", "-5", "1h-", "h1", "1 h", "1hh"])
def test_a_bad_duration_names_the_fix(text: str) -> None:
    with pytest.raises(typer.BadParameter, match="not a duration; use a number or units"):
        parse_duration(text, "s")


def test_a_default_value_reaches_the_parser_as_a_number() -> None:
    assert durations.seconds(600.0) == 600.0
    assert durations.minutes(480) == 480


def test_job_create_timeout_takes_units_and_rounds_up_to_minutes() -> None:
    assert durations.minutes("480") == 480
    assert durations.minutes("2h") == 120
    assert durations.minutes("90s") == 2


def test_bad_duration_on_the_command_line(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    done = run_cli(["job", "wait", "job_1", "--timeout", "3q"], env, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "'--timeout': '3q' is not a duration; use a number or units" in done.stderr


def test_help_shows_human_metavars() -> None:
    for args in (["plan", "--help"], ["job", "create", "--help"], ["job", "wait", "--help"]):
        shown = run_cli(args, cli_env(Path("/nonexistent"))).stdout
        # No `<list[Path]>`, `<float range>` (click's range hints such as `[1<=x<=16]` stay).
        names = re.sub(r"\[[^\]]*x[^\]]*\]", "", shown.replace("<id>", ""))
        assert "<" not in names, shown
        assert "{" not in shown.splitlines()[0], shown  # usage: `JOB_ID`, not `{JOB_ID}`
    plan = run_cli(["plan", "--help"], cli_env(Path("/nonexistent"))).stdout
    for row in ("--var NAME=VALUE", "--target ADDR", "--max-cost NUMBER", "-f, --file PATH"):
        assert row in plan, plan


@pytest.mark.slow
def test_dumont_token_is_honoured_by_the_embedded_server(tmp_path: Path) -> None:
    env = cli_env(tmp_path, token="garbage")
    try:
        refused = run_cli(["job", "list"], env, cwd=tmp_path)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert "DUMONT_TOKEN was refused by the local control plane" in refused.stderr
        assert "unset DUMONT_TOKEN to use the local account" in refused.stderr
        del env["DUMONT_TOKEN"]
        assert run_cli(["job", "list"], env, cwd=tmp_path).returncode == 0
    finally:
        env.pop("DUMONT_TOKEN", None)
        run_cli(["server", "stop"], env, cwd=tmp_path)
