"""Output helpers shared by commands: JSON for scripts, rich tables for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dumont_plan.errors import DumontError

if TYPE_CHECKING:
    from rich.console import Console

    # Data is never read as emoji codes (a job named ":fire:" stays so); callers that print data
    # pass markup=False or use print_fields/print_table, which never read data as markup.
    console: Console
    err_console: Console


def _console(name: str) -> Console:
    made: Console | None = globals().get(name)
    if made is None:
        from rich.console import Console

        made = Console(stderr=name == "err_console", highlight=False, emoji=False)
        globals()[name] = made  # from now on a plain module attribute
    return made


def __getattr__(name: str) -> Console:
    """`console` and `err_console`, made on first use: importing rich costs `dumont validate`
    about 1.5x `python -c pass` (benchmarks/startup.py)."""
    if name in ("console", "err_console"):
        return _console(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


OutputOpt = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="`table` for people, `json` for scripts."),
]


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def print_table(
    rows: Iterable[dict[str, Any]], columns: Sequence[str], title: str | None = None
) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, show_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column.upper().replace("_", " "))
    count = 0
    for row in rows:
        table.add_row(*(Text("" if row.get(c) is None else str(row.get(c))) for c in columns))
        count += 1
    if count == 0:
        _console("console").print("(none)")
    else:
        _console("console").print(table)


def print_fields(data: dict[str, Any], fields: Sequence[str] | None = None) -> None:
    keys = list(fields) if fields else list(data.keys())
    width = max((len(k) for k in keys), default=0)
    for key in keys:
        value = data.get(key)
        line = f"{key.ljust(width)}  {'-' if value is None else value}"
        _console("console").print(line, soft_wrap=True, markup=False)


def coerce(value: str) -> Any:
    """`key=value` coercion of the old CLI: true/false, integers, decimals, else text."""
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def split_key_values(
    args: Sequence[str], allowed: Sequence[str], where: str
) -> tuple[list[str], dict[str, Any]]:
    """Split the old CLI's `key=value` words from plain positionals; unknown keys are errors."""
    positionals: list[str] = []
    pairs: dict[str, Any] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key.replace("-", "_").isidentifier():
            name = key.replace("-", "_")
            if name not in allowed:
                raise DumontError(
                    f"{where}: unknown option {key!r}",
                    f"use one of: {', '.join(allowed)}" if allowed else "it takes no options",
                )
            pairs[name] = coerce(value)
        else:
            positionals.append(arg)
    return positionals, pairs
