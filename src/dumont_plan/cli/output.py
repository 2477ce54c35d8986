"""Output helpers shared by commands: JSON for scripts, rich tables and a status line for people."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dumont_plan.errors import DumontError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status

    # Data is never read as emoji codes (a job named ":fire:" stays so); callers that print data
    # pass markup=False or use print_fields/print_table, which never read data as markup.
    console: Console
    err_console: Console


def _console(name: str) -> Console:
    made: Console | None = globals().get(name)
    if made is None:
        from rich.console import Console

        stream = sys.stderr if name == "err_console" else sys.stdout
        made = Console(
            stderr=name == "err_console",
            highlight=False,
            emoji=False,
            **unwrapped_when_piped(stream, os.environ),
        )
        globals()[name] = made  # from now on a plain module attribute
    return made


PIPED_WIDTH = 1000  # "no wrapping" for a log: rich needs some width


def unwrapped_when_piped(stream: Any, env: Mapping[str, str]) -> dict[str, Any]:
    """Console options: on a terminal, rich's own (its width); piped (a CI log, a file), no
    wrapping at 80 columns, which split plan summaries and messages mid-sentence: the lines
    keep their length, except that `COLUMNS` set by the user is honoured."""
    isatty = getattr(stream, "isatty", None)
    if (isatty is not None and isatty()) or env.get("COLUMNS", "").strip().isdigit():
        return {}
    return {"width": PIPED_WIDTH, "soft_wrap": True}


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


# C0 controls (ESC starts terminal escape sequences), DEL and C1 controls (0x9b is a one-byte
# CSI): a name or message from the API must not drive the terminal.
_CONTROL: dict[int, str | None] = {c: None for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}
_CONTROL.update({ord("\t"): " ", ord("\n"): " "})


def clean_cell(value: object) -> str:
    """`value` as text for a table cell or field: control characters dropped (tab and newline
    become spaces)."""
    return str(value).translate(_CONTROL)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def print_table(
    rows: Iterable[dict[str, Any]], columns: Sequence[str], title: str | None = None
) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, show_edge=False, header_style="bold")
    lines = [[_cell(row.get(c)) for c in columns] for row in rows]
    for index, column in enumerate(columns):
        # An id is what the next command needs: on a narrow terminal the other columns give
        # way, it is never cut short (`sch_edcc…`).
        whole = column == "id" or (column.endswith("_id") and index == 0)
        width = max((len(cells[index]) for cells in lines), default=0) if whole else None
        table.add_column(column.upper().replace("_", " "), no_wrap=whole, min_width=width)
    for cells in lines:
        table.add_row(*(Text(cell) for cell in cells))
    if not lines:
        _console("console").print("(none)")
    else:
        _console("console").print(table)


def _cell(value: Any) -> str:
    return "" if value is None else clean_cell(value)


def print_fields(data: dict[str, Any], fields: Sequence[str] | None = None) -> None:
    keys = list(fields) if fields else list(data.keys())
    width = max((len(k) for k in keys), default=0)
    for key in keys:
        value = data.get(key)
        line = f"{key.ljust(width)}  {'-' if value is None else clean_cell(value)}"
        _console("console").print(line, soft_wrap=True, markup=False)


class StatusLine:
    """A live one-line status on `console` (use as a context manager, call `update(text)`).

    On a terminal it is a rich spinner rewritten in place; otherwise each new text is printed
    as its own line, and repeats are skipped so a log file stays short.
    """

    def __init__(self, console: Console, *, live: bool | None = None) -> None:
        self.console = console
        self.live = console.is_terminal if live is None else live
        self._status: Status | None = None
        self._last: str | None = None

    def __enter__(self) -> StatusLine:
        if self.live:
            from rich.text import Text

            self._status = self.console.status(Text(""), spinner="dots")
            self._status.start()
        return self

    def update(self, text: str, key: str | None = None) -> None:
        """Show `text` (control characters dropped). Off a terminal it is printed only when
        `key` (default: the text) changed, so a line with a running clock in it is not repeated
        every tick."""
        text = clean_cell(text)
        if self._status is not None:
            from rich.text import Text

            self._status.update(Text(text))
            return
        seen = text if key is None else key
        if seen == self._last:
            return
        self._last = seen
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def print(self, text: str) -> None:
        """A permanent line above the status (e.g. a log line while waiting)."""
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


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
