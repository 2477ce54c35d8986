"""Shell completion (typer's protocol: `_DUMONT_COMPLETE=complete_SHELL`) through the lazy root:
command names complete from the table without importing any command module; completing inside
a command imports it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dumont_plan.cli.app import Root
from tests.support import UserSession, cli_env, new_user, run_cli

PROBE = """
import atexit, json, sys
atexit.register(lambda: print("MODULES=" + json.dumps(sorted(sys.modules)), file=sys.stderr))
from dumont_plan.cli.main import main
sys.exit(main())
"""


def complete_bash(words: str, home: Path, probe: bool = False) -> subprocess.CompletedProcess[str]:
    """What bash gets back for the command line `words` (the last word is being completed)."""
    parts = words.split(" ")
    env = cli_env(home) | {
        "_DUMONT_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(parts) - 1),
    }
    if probe:
        argv = [sys.executable, "-c", PROBE]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    return run_cli([], env)


def test_command_names_complete(home: Path) -> None:
    done = complete_bash("dumont jo", home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["job"]
    assert complete_bash("dumont s", home).stdout.split() == [
        "show",
        "state",
        "schema",
        "server",
        "serverless",
        "spot",
    ]
    assert complete_bash("dumont ", home).stdout.split() == list(Root.entries)


def test_subcommands_and_options_complete(home: Path) -> None:
    assert complete_bash("dumont job c", home).stdout.split() == ["create", "cancel"]
    assert complete_bash("dumont state ", home).stdout.split() == [
        "list",
        "rm",
        "mv",
        "push",
        "pull",
    ]
    assert complete_bash("dumont serverless w", home).stdout.split() == ["wake", "webhooks"]
    assert complete_bash("dumont serverless enable 12 --idle", home).stdout.split() == [
        "--idle-timeout"
    ]
    modes = complete_bash("dumont serverless enable 12 --mode ", home).stdout.split()
    assert modes == ["fast", "economic", "spot"]
    assert complete_bash("dumont serverless enable 12 --mode e", home).stdout.split() == [
        "economic"
    ]
    assert complete_bash("dumont finetune c", home).stdout.split() == ["create", "cancel"]
    assert complete_bash("dumont finetune create x --dat", home).stdout.split() == [
        "--dataset",
        "--dataset-source",
    ]
    assert complete_bash("dumont apply --par", home).stdout.split() == ["--parallelism"]
    assert "--wait-timeout" in complete_bash("dumont job create x --wa", home).stdout.split()
    assert complete_bash("dumont spot template ", home).stdout.split() == [
        "create",
        "list",
        "delete",
    ]
    assert complete_bash("dumont spot deploy --no", home).stdout.split() == [
        "--no-auto-failover",
        "--no-wait",
    ]


def test_completing_a_command_name_imports_no_command_module(home: Path) -> None:
    done = complete_bash("dumont ", home, probe=True)
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stderr.splitlines() if x.startswith("MODULES="))
    modules = set(json.loads(line.removeprefix("MODULES=")))
    assert sorted({e.module for e in Root.entries.values()} & modules) == []


def test_zsh_gets_names_with_their_help(home: Path) -> None:
    env = cli_env(home) | {"_DUMONT_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "dumont jo"}
    done = run_cli([], env)
    assert done.returncode == 0, done.stderr
    assert '"job":"Run a command on a GPU machine once' in done.stdout


def test_show_and_install_completion(home: Path) -> None:
    shown = run_cli(["--show-completion", "bash"], cli_env(home))
    assert shown.returncode == 0, shown.stderr
    assert "_DUMONT_COMPLETE=complete_bash" in shown.stdout
    assert "complete -o default -F _dumont_completion dumont" in shown.stdout
    installed = run_cli(["--install-completion", "bash"], cli_env(home))
    assert installed.returncode == 0, installed.stderr
    script = home / ".bash_completions" / "dumont.sh"
    assert script.read_text().strip() == shown.stdout.strip()
    assert f"source '{script}'" in (home / ".bashrc").read_text()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_through_the_installed_script(home: Path, tmp_path: Path) -> None:
    """The script `--show-completion` prints, sourced in a real bash, completes `dumont job c`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "dumont"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m dumont_plan "$@"\n')
    wrapper.chmod(0o755)
    env = cli_env(home) | {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    script = run_cli(["--show-completion", "bash"], env).stdout
    session = (
        f"{script}\n"
        "COMP_WORDS=(dumont job c); COMP_CWORD=2\n"
        "_dumont_completion dumont\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", session],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["create", "cancel"]


def test_addresses_complete_from_the_spec_and_the_state(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "work"
    (folder / ".dumont").mkdir(parents=True)
    (folder / "dumont.yaml").write_text(
        "project: p\njobs:\n  train: {command: x}\n  eval: {command: y}\n"
        "instances:\n  box: {gpu_name: RTX 4090}\n"
    )
    (folder / ".dumont" / "state.json").write_text(
        json.dumps({"resources": {"job.old": {}, "job.train": {}}})
    )

    def complete(words: str) -> list[str]:
        parts = words.split(" ")
        env = cli_env(home) | {
            "_DUMONT_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(parts) - 1),
        }
        return run_cli([], env, cwd=folder).stdout.split()

    assert complete("dumont plan --target job.") == ["job.eval", "job.old", "job.train"]
    assert complete("dumont apply --replace job.t") == ["job.train"]
    assert complete("dumont destroy --target in") == ["instance.box"]
    assert complete("dumont plan --exclude ") == [
        "instance.box",
        "job.eval",
        "job.old",
        "job.train",
    ]


@pytest.mark.slow
def test_job_and_instance_ids_complete_from_the_api(home: Path, user: UserSession) -> None:
    job = user.client.jobs.create(name="to-complete", command="true").id
    other = new_user(user.url)
    theirs = other.client.jobs.create(name="not-mine", command="true").id

    def complete(words: str) -> list[str]:
        parts = words.split(" ")
        env = cli_env(home, user.url, user.token) | {
            "_DUMONT_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(parts) - 1),
        }
        return run_cli([], env).stdout.split()

    found = complete("dumont job status job_")
    assert job in found and theirs not in found  # only the caller's
    assert job in complete(f"dumont job logs {job[:7]}")
    assert complete("dumont job status zzz") == []
    # Nothing configured and no server running: nothing completes, nothing starts.
    quiet = cli_env(home) | {
        "_DUMONT_COMPLETE": "complete_bash",
        "COMP_WORDS": "dumont job status ",
        "COMP_CWORD": "3",
    }
    assert run_cli([], quiet).stdout.split() == []
    assert not (home / ".local" / "share" / "dumont-plan" / "server.json").exists()
