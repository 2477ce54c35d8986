"""The CLI reference in Markdown, generated from the real command tree (README, between the
cli-reference markers; `scripts/gen-cli-ref` writes it, tests/cli/test_cli_reference.py fails
when it is stale).

Every command and subcommand gets its usage line, its help, a table of its arguments and
options as `--help` shows them (help, default, range) and its examples. Options that many
commands share with the same help (`-f`, `--var`, `-o`, ...) are described once, under "Common
options", and only named where they apply.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import typer
from typer import _click
from typer.core import TyperGroup

from dumont_plan.cli.lazy import human_metavars, human_usage, is_example

MARK_START = "<!-- cli-reference:start -->"
MARK_END = "<!-- cli-reference:end -->"
COMMON_MIN_USES = 5  # an option (same flags, same help) used this often is a common option
HELP_OPTION = "-h, --help"


@dataclass(frozen=True)
class Node:
    path: tuple[str, ...]  # ("dumont", "job", "create")
    command: _click.Command
    ctx: _click.Context

    @property
    def name(self) -> str:
        return " ".join(self.path)

    @property
    def depth(self) -> int:
        return len(self.path) - 1

    def usage(self) -> str:
        pieces = self.command.collect_usage_pieces(self.ctx)
        return human_usage(" ".join([self.name, *pieces]))

    def rows(self) -> list[tuple[str, str]]:
        """(flags, help) of each argument and visible option, as `--help` shows them."""
        rows = []
        for param in self.command.get_params(self.ctx):
            record = param.get_help_record(self.ctx)
            if record is not None and record[0] != HELP_OPTION:
                rows.append((human_metavars(record[0]), record[1]))
        return rows


def walk(command: _click.Command, ctx: _click.Context, path: tuple[str, ...]) -> Iterator[Node]:
    """The command and everything under it, lazy commands imported, in `--help` order."""
    yield Node(path, command, ctx)
    if isinstance(command, TyperGroup):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            sub_ctx = sub.make_context(name, [], parent=ctx, resilient_parsing=True)
            yield from walk(sub, sub_ctx, (*path, name))


def command_tree() -> list[Node]:
    from dumont_plan.cli.app import app

    root = typer.main.get_command(app)
    ctx = root.make_context("dumont", [], resilient_parsing=True)
    return list(walk(root, ctx, ("dumont",)))


# -- Markdown -------------------------------------------------------------------------------


def _escape(text: str, *, in_table: bool = False) -> str:
    """Markdown for plain help text: code spans kept, `*`, `<` and (in tables) `|` escaped."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            part = part.replace("\\", "\\\\").replace("*", "\\*").replace("<", "&lt;")
        if in_table:
            part = part.replace("|", "\\|")
        out.append(part)
    return "".join(out)


def _paragraphs(text: str) -> list[str]:
    """Help text as paragraphs, each on one line (click's `\\b` markers dropped)."""
    paragraphs = []
    for block in text.replace("\b", "").strip().split("\n\n"):
        joined = " ".join(line.strip() for line in block.splitlines() if line.strip())
        if joined:
            paragraphs.append(joined)
    return paragraphs


def _epilog(text: str) -> list[str]:
    """The epilog: text paragraphs as text, example command lines in one code block each run."""
    out: list[str] = []
    examples: list[str] = []
    for block in text.strip().split("\n\n"):
        if is_example(block):
            examples += [line.strip() for line in block.splitlines() if line.strip()]
            continue
        if examples:
            out += ["```sh", *examples, "```", ""]
            examples = []
        out += [_escape(p) for p in _paragraphs(block)] + [""]
    if examples:
        out += ["```sh", *examples, "```", ""]
    return out


def _anchor(node: Node) -> str:
    """GitHub's anchor of the node's heading (`dumont job create` -> dumont-job-create)."""
    return "-".join(node.path)


def _common_rows(nodes: list[Node]) -> list[tuple[str, str]]:
    uses = Counter(row for node in nodes if node.depth for row in node.rows())
    return [row for row, count in uses.items() if count >= COMMON_MIN_USES]


def _flags(row: tuple[str, str]) -> str:
    """The option's flags without their value type: `-f, --file <list[Path]>` -> `-f/--file`."""
    names = [w.rstrip(",") for w in row[0].split() if w.startswith("-")]
    return "/".join(names)


def _table(rows: list[tuple[str, str]]) -> list[str]:
    lines = ["| argument / option | description |", "|---|---|"]
    for flags, help_text in rows:
        lines.append(
            f"| `{flags.replace('|', chr(92) + '|')}` | {_escape(help_text, in_table=True)} |"
        )
    return lines


def cli_reference() -> str:
    """The Markdown between the README's cli-reference markers."""
    nodes = command_tree()
    root, commands = nodes[0], nodes[1:]
    common = _common_rows(nodes)
    out = [
        "Generated from the commands' own help by `scripts/gen-cli-ref` (a test fails when it is",
        "stale); `dumont COMMAND --help` prints the same. Every command takes `-h/--help`.",
        "",
        f"`{root.usage()}`",
        "",
        *_table(root.rows()),
        "",
        *_epilog(root.command.epilog or ""),
        "Shell completion: `dumont --install-completion` adds it to your shell's start-up file "
        "(bash, zsh, fish, PowerShell); `dumont --show-completion SHELL` prints the script "
        "instead.",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    for node in commands:
        if node.depth == 1:
            first = _paragraphs(node.command.help or "")[:1]
            summary = _escape(first[0], in_table=True) if first else ""
            out.append(f"| [`{node.name}`](#{_anchor(node)}) | {summary} |")
    out += [
        "",
        "### Common options",
        "",
        "Used by many commands with the same meaning; each command below names the ones it takes.",
        "",
        *_table(common),
        "",
    ]
    for node in commands:
        out += [f"{'#' * (node.depth + 2)} `{node.name}`", ""]
        paragraphs = [_escape(p) for p in _paragraphs(node.command.help or "")]
        if not isinstance(node.command, TyperGroup):  # a group's usage says nothing new
            # The usage, then (after a line break) the first paragraph.
            usage = f"`{node.usage()}`"
            paragraphs[:1] = [f"{usage}\\\n{paragraphs[0]}" if paragraphs else usage]
        out += [line for p in paragraphs for line in (p, "")]
        rows = node.rows()
        own = [row for row in rows if row not in common]
        shared = [_flags(row) for row in rows if row in common]
        if own:
            out += [*_table(own), ""]
        if shared:
            listed = ", ".join(f"`{flags}`" for flags in shared)
            out += [f"Common options: {listed}.", ""]
        if node.command.epilog:
            out += _epilog(node.command.epilog)
    return "\n".join(out).rstrip("\n") + "\n"


def replace_between_markers(text: str, body: str) -> str:
    """`text` with the part between the cli-reference markers replaced by `body`."""
    start = text.index(MARK_START) + len(MARK_START)
    end = text.index(MARK_END)
    return text[:start] + "\n" + body + text[end:]


def section_of(text: str) -> str:
    """The part of `text` between the cli-reference markers."""
    return text[text.index(MARK_START) + len(MARK_START) : text.index(MARK_END)]
