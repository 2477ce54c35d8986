"""Command groups imported only when used, so `dumont --help` and `dumont validate` start fast.

The imperative groups (job, instance, ...) import httpx, the client and more; importing all of
them cost `dumont --help` about 10x `python -c pass` (benchmarks/startup.py). The root group
lists each lazy group under its name with the help from its `LazyGroup` entry; running the group,
completing it or asking its own help imports its module and converts its `app` exactly as
`app.add_typer(module.app, name=NAME)` would have.

    class Root(LazyGroups):
        groups = {"job": LazyGroup("dumont_plan.cli.job", "Run a command on a GPU machine ...")}

    app = typer.Typer(cls=Root, ...)
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from difflib import get_close_matches
from typing import ClassVar

import typer
from typer import _click
from typer._click.exceptions import UsageError
from typer.core import TyperGroup
from typer.main import get_group_from_info
from typer.models import TyperInfo


@dataclass(frozen=True)
class LazyGroup:
    module: str  # defines `app = typer.Typer(help=...)`
    help: str  # the first paragraph of that help (tests/test_startup_imports.py checks it)


def load_group(name: str, entry: LazyGroup, parent: TyperGroup) -> TyperGroup:
    """Import the group's module and convert its Typer app as `add_typer` does."""
    sub_app: typer.Typer = importlib.import_module(entry.module).app
    return get_group_from_info(
        TyperInfo(sub_app, name=name),
        pretty_exceptions_short=sub_app.pretty_exceptions_short,
        rich_markup_mode=parent.rich_markup_mode,
        suggest_commands=parent.suggest_commands,
    )


class LazyGroups(TyperGroup):
    """A root group whose `groups` are imported on first use (not for the root's help)."""

    groups: ClassVar[Mapping[str, LazyGroup]] = {}
    _listing_help = False

    def list_commands(self, ctx: _click.Context) -> list[str]:
        # Same order as eager registration: commands, then groups in registration order.
        names = super().list_commands(ctx)
        lazy = [name for name in self.groups if name not in self.commands]
        first_group = next(
            (i for i, n in enumerate(names) if isinstance(self.commands[n], TyperGroup)),
            len(names),
        )
        return [*names[:first_group], *lazy, *names[first_group:]]

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        entry = self.groups.get(cmd_name)
        if entry is not None and cmd_name not in self.commands:
            if self._listing_help:
                return TyperGroup(name=cmd_name, help=entry.help, hidden=False)
            self.add_command(load_group(cmd_name, entry, self), cmd_name)
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

    def format_help(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        self._listing_help = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing_help = False
