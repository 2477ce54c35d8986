"""Invariant 5: every broken spec in tests/cases/broken gives one located message, exit 1.

Each case is a file `NN-name.yaml` (or a folder `NN-name/` of several files) whose first line
is `# expect: FILE:LINE:COL path: message` and whose optional second line is `# args: ...`
(extra `dumont validate` arguments). The case is copied to a temporary folder and checked with
`dumont validate -f dumont.yaml ARGS` (a folder without dumont.yaml: `-f .`), so the location
printed is exactly the one written in the case. Most run in-process for speed; a few run as a
real subprocess, end to end.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

import pytest

from dumont_plan.cli.app import run
from tests.support import cli_env, run_cli

CASES_DIR = Path(__file__).resolve().parent.parent / "cases" / "broken"
CASES = sorted(p for p in CASES_DIR.iterdir() if p.name[:2].isdigit())
SUBPROCESS = {"01-yaml-syntax.yaml", "18-duplicate-address", "21-bad-var-file"}


def header(case: Path) -> tuple[str, list[str]]:
    """(expected message, extra arguments) from the case's first lines."""
    if case.is_dir():
        first = (
            case / "dumont.yaml" if (case / "dumont.yaml").exists() else sorted(case.iterdir())[0]
        )
    else:
        first = case
    lines = first.read_text(encoding="utf-8", errors="replace").splitlines()
    assert lines[0].startswith("# expect: "), f"{first}: line 1 must be '# expect: ...'"
    args = lines[1].removeprefix("# args: ") if lines[1].startswith("# args: ") else ""
    return lines[0].removeprefix("# expect: "), shlex.split(args)


def stage(case: Path, work: Path) -> list[str]:
    """Copy the case to `work`; the `dumont validate` arguments to run there."""
    if case.is_dir():
        shutil.copytree(case, work)
        files = ["-f", "dumont.yaml"] if (work / "dumont.yaml").exists() else ["-f", "."]
    else:
        work.mkdir()
        shutil.copyfile(case, work / "dumont.yaml")
        files = ["-f", "dumont.yaml"]
    return ["validate", *files, *header(case)[1]]


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_broken_spec(
    case: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    expect, _ = header(case)
    work = tmp_path / "work"
    argv = stage(case, work)
    home = tmp_path / "home"
    home.mkdir()
    if case.name in SUBPROCESS:
        result = run_cli(argv, cli_env(home), cwd=work)
        code, out, err = result.returncode, result.stdout, result.stderr
    else:
        for key in list(os.environ):
            if key.startswith(("DUMONT_", "XDG_", "CORPUS_")):
                monkeypatch.delenv(key)
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.chdir(work)
        code = run(argv)
        out, err = capsys.readouterr()
    assert code == 1, (out, err)
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"Error: {expect}"), lines[0]
