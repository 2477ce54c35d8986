"""Start-up stays light: what `dumont --version`, `--help` and `validate` import
(benchmarks/startup.py measures the time; this pins the cause).

Each check runs the real entry point in a fresh interpreter and reads `sys.modules` at exit.
"""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from dumont_plan.cli.app import Root, app
from dumont_plan.cli.lazy import LazyCommand, registered_commands
from tests.support import UserSession

PROBE = """
import atexit, json, sys
atexit.register(lambda: print("MODULES=" + json.dumps(sorted(sys.modules)), file=sys.stderr))
from dumont_plan.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
COMMAND_MODULES = sorted({entry.module for entry in Root.entries.values()})


def modules_after(
    args: list[str], home: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "HOME": str(home),
            "PATH": "/usr/bin:/bin",
            "NO_COLOR": "1",
            "COLUMNS": "100",
            **(env or {}),
        },
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stderr.splitlines() if x.startswith("MODULES="))
    return set(json.loads(line.removeprefix("MODULES=")))


def top_level(modules: set[str], names: list[str]) -> list[str]:
    return sorted(n for n in names if n in modules or any(m.startswith(n + ".") for m in modules))


def root_group() -> Root:
    group = typer.main.get_command(app)
    assert isinstance(group, Root)
    return group


def test_version_imports_no_cli_framework(tmp_path: Path) -> None:
    modules = modules_after(["--version"], tmp_path)
    assert top_level(modules, ["typer", "httpx", "pydantic", "rich", "yaml", "jinja2"]) == []


def test_help_imports_no_command_module(tmp_path: Path) -> None:
    modules = modules_after(["--help"], tmp_path)
    heavy = ["fastapi", "uvicorn", "starlette", "httpx", "pydantic", "rich", "yaml", "jinja2"]
    assert top_level(modules, heavy) == []
    assert top_level(modules, ["dumont_plan.server", "dumont_plan.client"]) == []
    # Every command is listed without importing its module.
    assert top_level(modules, COMMAND_MODULES) == []


def test_validate_imports_only_what_it_needs(tmp_path: Path) -> None:
    spec = tmp_path / "dumont.yaml"
    spec.write_text("version: 1\nproject: p\njobs:\n  a:\n    command: echo hi\n")
    modules = modules_after(["validate", "-f", str(spec)], tmp_path)
    heavy = ["fastapi", "uvicorn", "httpx", "rich", "jinja2", "dumont_plan.server"]
    assert top_level(modules, heavy) == []
    others = [m for m in COMMAND_MODULES if m != Root.entries["validate"].module]
    assert top_level(modules, others) == []


# What only apply and destroy need: the engine and everything under it, the race.
APPLY_ONLY = [
    "dumont_plan.apply.engine",
    "dumont_plan.apply.workflow",
    "dumont_plan.apply.scheduler",
    "dumont_plan.apply.waits",
    "dumont_plan.apply.recover",
    "dumont_plan.apply.resolve",
    "dumont_plan.apply.events",
    "dumont_plan.wizard",
    "dumont_plan.kinds.instance_ops",
]


def test_plan_imports_no_apply_engine(tmp_path: Path, user: UserSession) -> None:
    """`dumont plan` reads and plans only: none of the modules that change anything load."""
    spec = tmp_path / "dumont.yaml"
    spec.write_text("version: 1\nproject: p\njobs:\n  a:\n    command: echo hi\n")
    env = {"DUMONT_API_URL": user.url, "DUMONT_TOKEN": user.token}
    modules = modules_after(["plan", "-f", str(spec)], tmp_path, env, cwd=tmp_path)
    # The probe saw the plan's path: it observed through the jobs' ops and planned.
    assert {"dumont_plan.apply.plan_flow", "dumont_plan.kinds.job_ops"} <= modules
    assert top_level(modules, APPLY_ONLY) == []
    assert top_level(modules, ["fastapi", "uvicorn", "dumont_plan.server"]) == []


@pytest.mark.parametrize("name", list(Root.entries))
def test_listed_help_is_the_commands_own(name: str) -> None:
    """`dumont --help` shows for each entry the first paragraph of the command's own help."""
    command = Root.entries[name].load(name, root_group())
    first_paragraph = inspect.cleandoc(command.help or "").split("\n\n")[0]
    assert Root.entries[name].help == first_paragraph.replace("\n", " ").strip()


def test_the_table_lists_every_registered_command() -> None:
    registered: set[str] = set()
    for module in {e.module for e in Root.entries.values() if isinstance(e, LazyCommand)}:
        registered |= set(registered_commands(module, root_group()))
    in_table = {name for name, e in Root.entries.items() if isinstance(e, LazyCommand)}
    assert registered == in_table


@pytest.mark.slow
def test_help_lists_every_command_and_they_still_run(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "NO_COLOR": "1", "COLUMNS": "200"}
    root = subprocess.run(
        [sys.executable, "-m", "dumont_plan", "--help"], capture_output=True, text=True, env=env
    )
    assert root.returncode == 0, root.stderr
    assert "╭" not in root.stdout  # plain click help, no rich panels
    listed = [line.split()[0] for line in root.stdout.splitlines() if line.startswith("  ")]
    assert [n for n in listed if n in Root.entries] == list(Root.entries)
    for args, usage in [
        (["job", "--help"], "Usage: dumont job [OPTIONS] COMMAND [ARGS]..."),
        (["state", "list", "--help"], "Usage: dumont state list [OPTIONS]"),
        (["validate", "--help"], "Usage: dumont validate [OPTIONS]"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "dumont_plan", *args], capture_output=True, text=True, env=env
        )
        assert done.returncode == 0, done.stderr
        assert usage in done.stdout
    typo = subprocess.run(
        [sys.executable, "-m", "dumont_plan", "jbo"], capture_output=True, text=True, env=env
    )
    assert typo.returncode == 1
    assert "No such command 'jbo'. Did you mean 'job'?" in typo.stderr


def test_examples_are_kept_whole_and_options_never_break_at_a_hyphen(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "NO_COLOR": "1", "COLUMNS": "60"}
    done = subprocess.run(
        [sys.executable, "-m", "dumont_plan", "job", "create", "--help"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    example = (
        '    dumont job create fetch --source=huggingface --hf-repo="user/repo" '
        '--hf-token-env=HF_TOKEN --command="python main.py"'
    )
    assert example in lines
    assert [line for line in lines if re.search(r"\w-$", line)] == []
