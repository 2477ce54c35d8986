"""Start-up stays light: what `dumont --version` and `dumont --help` import (benchmarks/startup.py
measures the time; this pins the cause).

Each check runs the real entry point in a fresh interpreter and reads `sys.modules` at exit.
"""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dumont_plan.cli.app import Root

PROBE = """
import atexit, json, sys
atexit.register(lambda: print("MODULES=" + json.dumps(sorted(sys.modules)), file=sys.stderr))
from dumont_plan.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def modules_after(args: list[str], home: Path) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin", "NO_COLOR": "1", "COLUMNS": "100"},
    )
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stderr.splitlines() if x.startswith("MODULES="))
    return set(json.loads(line.removeprefix("MODULES=")))


def top_level(modules: set[str], names: list[str]) -> list[str]:
    return sorted(n for n in names if n in modules or any(m.startswith(n + ".") for m in modules))


def test_version_imports_no_cli_framework(tmp_path: Path) -> None:
    modules = modules_after(["--version"], tmp_path)
    assert top_level(modules, ["typer", "httpx", "pydantic", "rich", "yaml", "jinja2"]) == []


def test_help_imports_no_server_nor_client(tmp_path: Path) -> None:
    modules = modules_after(["--help"], tmp_path)
    heavy = ["fastapi", "uvicorn", "starlette", "httpx", "dumont_plan.server", "dumont_plan.client"]
    assert top_level(modules, heavy) == []
    # The command groups are listed without importing their modules.
    assert top_level(modules, [entry.module for entry in Root.groups.values()]) == []


def test_validate_imports_no_server_nor_client(tmp_path: Path) -> None:
    spec = tmp_path / "dumont.yaml"
    spec.write_text("version: 1\nproject: p\njobs:\n  a:\n    command: echo hi\n")
    modules = modules_after(["validate", "-f", str(spec)], tmp_path)
    assert top_level(modules, ["fastapi", "uvicorn", "httpx", "dumont_plan.server"]) == []


@pytest.mark.parametrize("name", sorted(Root.groups))
def test_lazy_group_help_is_the_groups_own(name: str) -> None:
    """`dumont --help` shows for each lazy group the first paragraph of the group's own help."""
    entry = Root.groups[name]
    help_text = importlib.import_module(entry.module).app.info.help
    first_paragraph = inspect.cleandoc(help_text).split("\n\n")[0].replace("\n", " ").strip()
    assert entry.help == first_paragraph


def test_help_lists_every_group_and_a_group_still_runs(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "NO_COLOR": "1", "COLUMNS": "200"}
    root = subprocess.run(
        [sys.executable, "-m", "dumont_plan", "--help"], capture_output=True, text=True, env=env
    )
    assert root.returncode == 0, root.stderr
    listed = [line.split()[1] for line in root.stdout.splitlines() if line.startswith("│ ")]
    assert set(Root.groups) <= set(listed)
    group = subprocess.run(
        [sys.executable, "-m", "dumont_plan", "job", "--help"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert group.returncode == 0, group.stderr
    assert "Usage: dumont job [OPTIONS] COMMAND [ARGS]..." in group.stdout
    typo = subprocess.run(
        [sys.executable, "-m", "dumont_plan", "jbo"], capture_output=True, text=True, env=env
    )
    assert typo.returncode == 1
    assert "No such command 'jbo'. Did you mean 'job'?" in typo.stderr
