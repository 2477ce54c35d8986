"""Top-level commands imported only when used, so `dumont --help` and `dumont validate` start fast.

Importing every command module costs `dumont --help` several times `python -c pass` (httpx, the
client, rich live views; benchmarks/startup.py). The root group lists each lazy entry under its
name with the help of its table entry (tests/test_startup_imports.py checks each against the
real command); running it, completing inside it or asking its own help imports its module:

    class Root(LazyGroups):
        entries = {
            "validate": LazyCommand("dumont_plan.cli.spec_cmds", "Check the spec offline: ..."),
            "job": LazyGroup("dumont_plan.cli.job", "Run a command on a GPU machine ..."),
        }

`LazyGroup`: the module's `app` (a typer.Typer), converted as `app.add_typer(module.app,
name=NAME)` would. `LazyCommand`: the command (or group) of that name that the module's
`register(app)` adds, converted as if `register` had been called on the root app.

Help is plain click text (no rich panels: typer's rich help alone costs about 11x `python -c
pass`), through `HelpFormatter`: words never break at a hyphen and example command lines are kept
as written.

Why typer's private modules (and the `typer<0.30` pin): typer 0.29 vendors click as `typer._click`
and exports none of what a lazy group needs (click's Context, HelpFormatter, UsageError,
CompletionItem). On typer's public API alone every command module is imported up front
(`add_typer` / `register`): `dumont --help` then measured 25.8x `python -c pass`, against
5.9x with this module in the same run and the 10x target of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from typing import ClassVar

import typer
from typer import _click
from typer._click.exceptions import UsageError
from typer._click.shell_completion import CompletionItem
from typer.core import TyperCommand, TyperGroup
from typer.main import get_group_from_info
from typer.models import TyperInfo

# -- help text ------------------------------------------------------------------------------

_HYPHEN = "-"
_NO_BREAK_HYPHEN = "\u2011"  # textwrap breaks after "-" but not after this one
_EXAMPLE_STARTS = ("dumont ", "$ ")


def _no_break(text: str) -> str:
    return text.replace(_HYPHEN, _NO_BREAK_HYPHEN)


def is_example(paragraph: str) -> bool:
    return any(line.lstrip().startswith(_EXAMPLE_STARTS) for line in paragraph.splitlines())


def keep_examples(text: str) -> str:
    """Mark paragraphs holding example command lines as not to be rewrapped (click's `\\b`).

    Consecutive example paragraphs become one block, one command a line, indented by two.
    """
    out: list[str] = []
    block: list[str] = []
    for paragraph in text.split("\n\n"):
        if is_example(paragraph):
            block += [
                "  " + line.strip() if line.lstrip().startswith(_EXAMPLE_STARTS) else line
                for line in paragraph.splitlines()
            ]
            continue
        if block:
            out.append("\b\n" + "\n".join(block))
            block = []
        out.append(paragraph)
    if block:
        out.append("\b\n" + "\n".join(block))
    return "\n\n".join(out)


# typer 0.29 names option values by their Python type (`<list[Path]>`, `<float range>`): the
# words people know from other CLIs instead (`PATH`, `NUMBER`), choices as `[a|b]`.
_METAVAR = re.compile(r"<([^<>]+)>")
_HUMAN = {
    "list[Path]": "PATH",
    "Path": "PATH",
    "path": "PATH",
    "list[str]": "TEXT",
    "str": "TEXT",
    "float range": "NUMBER",
    "float": "NUMBER",
    "int range": "INTEGER",
    "int": "INTEGER",
    "bool": "BOOLEAN",
}
_ARGUMENT_TYPE = re.compile(r"^(\{?[A-Z][A-Z0-9_]*\}?(?:\.\.\.)?) <[^<>]+>$")


def human_metavars(flags: str) -> str:
    """The first column of a help row with human value names (`--var <list[str]>` ->
    `--var TEXT`; an argument's own type is dropped: `JOB_ID <str>` -> `JOB_ID`)."""
    argument = _ARGUMENT_TYPE.match(flags)
    if argument:
        return argument.group(1).strip("{}")

    def word(match: re.Match[str]) -> str:
        inner = match.group(1)
        if inner in _HUMAN:
            return _HUMAN[inner]
        return f"[{inner}]" if "|" in inner else inner.upper()

    return _METAVAR.sub(word, flags)


def human_usage(args: str) -> str:
    """A usage line's arguments without typer's braces: `{JOB_ID}` -> `JOB_ID`."""
    return _BRACED.sub(r"\1", args)


_BRACED = re.compile(r"\{([A-Z][A-Z0-9_]*)\}")


class HelpFormatter(_click.HelpFormatter):
    """click's help formatter that never breaks `--wait-timeout` at its hyphen and keeps example
    command lines (`dumont ...`) whole, so they can be copied."""

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(_no_break(prog), _no_break(human_usage(args)), prefix)

    def write_text(self, text: str) -> None:
        super().write_text(_no_break(keep_examples(text)))

    def write_dl(
        self, rows: Sequence[tuple[str, str]], col_max: int = 30, col_spacing: int = 2
    ) -> None:
        rows = [(_no_break(human_metavars(first)), _no_break(second)) for first, second in rows]
        super().write_dl(rows, col_max, col_spacing)

    def getvalue(self) -> str:
        return super().getvalue().replace(_NO_BREAK_HYPHEN, _HYPHEN)


class HelpContext(_click.Context):
    formatter_class = HelpFormatter


def use_help_formatter(command: _click.Command) -> _click.Command:
    """Give `command` and everything under it `HelpContext` (contexts come from each command)."""
    command.context_class = HelpContext
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            use_help_formatter(sub)
    return command


# -- lazy entries ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LazyEntry:
    module: str
    help: str  # the first paragraph of the command's own help (tests check it)
    section: str = "Commands"  # the heading it is listed under in the root's help

    def load(self, name: str, parent: TyperGroup) -> _click.Command:
        raise NotImplementedError


@dataclass(frozen=True)
class LazyGroup(LazyEntry):
    """A group: the module defines `app = typer.Typer(help=...)`."""

    def load(self, name: str, parent: TyperGroup) -> _click.Command:
        sub_app: typer.Typer = importlib.import_module(self.module).app
        return get_group_from_info(
            TyperInfo(sub_app, name=name),
            pretty_exceptions_short=sub_app.pretty_exceptions_short,
            rich_markup_mode=parent.rich_markup_mode,
            suggest_commands=parent.suggest_commands,
        )


@dataclass(frozen=True)
class LazyCommand(LazyEntry):
    """A command (or group) that the module's `register(app)` adds under this name."""

    def load(self, name: str, parent: TyperGroup) -> _click.Command:
        commands = registered_commands(self.module, parent)
        if name not in commands:
            raise RuntimeError(f"{self.module}.register() adds no command {name!r}")
        return commands[name]


def registered_commands(module: str, parent: TyperGroup) -> dict[str, _click.Command]:
    """The click commands that `module.register(app)` adds to an app, by name."""
    scratch = typer.Typer()
    importlib.import_module(module).register(scratch)
    group = get_group_from_info(
        TyperInfo(scratch),
        pretty_exceptions_short=True,
        rich_markup_mode=parent.rich_markup_mode,
        suggest_commands=parent.suggest_commands,
    )
    return dict(group.commands)


class LazyGroups(TyperGroup):
    """A root group whose `entries` are imported on first use (not for the root's help, nor to
    complete a command name)."""

    entries: ClassVar[Mapping[str, LazyEntry]] = {}
    context_class = HelpContext
    _listing = False

    def list_commands(self, ctx: _click.Context) -> list[str]:
        # The table's order, then commands added the usual way.
        return [*self.entries, *(n for n in super().list_commands(ctx) if n not in self.entries)]

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        entry = self.entries.get(cmd_name)
        if entry is not None and cmd_name not in self.commands:
            if self._listing:
                return TyperCommand(name=cmd_name, help=entry.help)
            self.add_command(use_help_formatter(entry.load(cmd_name, self)), cmd_name)
        return super().get_command(ctx, cmd_name)

    def resolve_command(
        self, ctx: _click.Context, args: list[str]
    ) -> tuple[str | None, _click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except UsageError as exc:
            # typer suggests only among loaded commands; suggest among all of them.
            if self.suggest_commands and args and exc.message.startswith("No such command"):
                base = exc.message.split(". Did you mean ", 1)[0].rstrip(".")
                matches = get_close_matches(args[0], self.list_commands(ctx))
                suggestion = ", ".join(repr(m) for m in matches)
                exc.message = f"{base}. Did you mean {suggestion}?" if matches else f"{base}."
            raise

    def format_commands(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        """The commands under their sections' headings, each with its short help."""
        sections: dict[str, list[tuple[str, _click.Command]]] = {}
        self._listing = True
        try:
            for name in self.list_commands(ctx):
                cmd = self.get_command(ctx, name)
                if cmd is not None and not cmd.hidden:
                    entry = self.entries.get(name)
                    sections.setdefault(entry.section if entry else "Commands", []).append(
                        (name, cmd)
                    )
        finally:
            self._listing = False
        if not sections:
            return
        width = max(len(name) for rows in sections.values() for name, _ in rows)
        limit = formatter.width - 6 - width
        for heading, rows in sections.items():
            with formatter.section(heading):
                # Padded names keep every section's help in one column.
                formatter.write_dl(
                    [(name.ljust(width), cmd.get_short_help_str(limit)) for name, cmd in rows]
                )

    def shell_complete(self, ctx: _click.Context, incomplete: str) -> list[CompletionItem]:
        # Completing a command name needs only the names and short help of the table.
        self._listing = True
        try:
            return super().shell_complete(ctx, incomplete)
        finally:
            self._listing = False
