"""The README's CLI reference is generated from the real command tree and kept current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dumont_plan.cli.docs import Node, cli_reference, command_tree, section_of

ROOT = Path(__file__).resolve().parent.parent.parent
REGENERATE = "run scripts/gen-cli-ref"
NODES = command_tree()


def test_readme_cli_reference_is_current() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert section_of(readme) == "\n" + cli_reference(), (
        f"README CLI reference is stale; {REGENERATE}"
    )


def test_gen_cli_ref_check_agrees() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-cli-ref"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("node", NODES, ids=lambda n: n.name)
def test_every_command_and_option_has_help(node: Node) -> None:
    assert (node.command.help or "").strip(), f"`{node.name}` has no help text"
    for flags, help_text in node.rows():
        assert help_text.strip(), f"`{node.name}`: {flags} has no help text"


def test_the_reference_covers_every_command() -> None:
    reference = cli_reference()
    names = [node.name for node in NODES[1:]]
    assert len(names) > 40  # every group's subcommands, not just the top level
    for name in names:
        assert f"# `{name}`\n" in reference, name
    # Options as --help shows them, defaults included; examples as runnable lines.
    assert "| `--parallelism INTEGER` | Changes carried out at once.  [default: 8;" in reference
    assert '\ndumont job create train --command="python train.py" --gpu="RTX 4090"\n' in reference


def test_the_reference_holds_nothing_of_this_machine() -> None:
    reference = cli_reference()
    assert str(Path.home()) not in reference
    assert str(ROOT) not in reference
