"""The README's quick start: the repo's `dumontfile` applies on a fresh machine.

A clean HOME (no API URL, no token, no data): `dumont apply --auto-approve` starts the embedded
local control plane by itself, applies the dumontfile, and a plan afterwards is empty. Then
destroy and `dumont server stop` with that HOME, and no process of that HOME outlives the test.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from tests.apply.applykit import processes_mentioning
from tests.support import REPO, cli_env, run_cli


def readme_apply_command() -> list[str]:
    """The last command of the README's first code block: `.venv/bin/dumont apply ...`."""
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", readme, re.S)
    assert block is not None, "README has no quick-start code block"
    last = block.group(1).strip().splitlines()[-1].split("&&")[-1].split()
    assert last[0].endswith("dumont"), last
    return last[1:]


@pytest.mark.slow
def test_the_readme_quick_start_applies_the_dumontfile(tmp_path: Path) -> None:
    args = readme_apply_command()
    assert args == ["apply", "--auto-approve"]
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "repo"
    work.mkdir()
    shutil.copy(REPO / "dumontfile", work / "dumontfile")
    env = cli_env(home)  # no DUMONT_API_URL, no DUMONT_TOKEN: the embedded default

    def dumont(*argv: str) -> str:
        result = run_cli(list(argv), env, cwd=work, timeout=180)
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode == 0, (argv, result.stdout, result.stderr)
        return result.stdout

    try:
        out = dumont(*args)
        assert "Apply complete:" in out, out
        assert "No changes." in dumont("plan")
        dumont("destroy", "--auto-approve")
        assert processes_mentioning(str(home))  # the embedded server, found by its data dir
    finally:
        run_cli(["server", "stop"], env, cwd=work)
    deadline = time.monotonic() + 60
    while processes_mentioning(str(home)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_mentioning(str(home)) == []


@pytest.mark.parametrize("name", ["dumontfile"])
def test_the_dumontfile_validates_offline(name: str, tmp_path: Path) -> None:
    shutil.copy(REPO / name, tmp_path / name)
    result = run_cli(["validate"], cli_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
