"""Durations on the command line: `90s`, `15m`, `2h`, `1h30m`, `1d`, or a bare number.

A bare number keeps each option's historical unit (minutes for `job create --timeout`, as the
API's `timeout_minutes`; seconds for every wait), so nothing that worked changes meaning.
"""

from __future__ import annotations

import math
import re

import typer

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_BARE = re.compile(r"\d+(?:\.\d+)?")
HINT = "use a number or units such as 30s, 15m, 2h, 1h30m"


def parse_duration(text: str | float, bare_unit: str) -> float:
    """Seconds in `text`; a bare number counts in `bare_unit` (`s` or `m`).

    An option's default reaches its parser as the number it is (a bare number too). Raises
    typer.BadParameter (click names the option) when `text` is not a duration.
    """
    if isinstance(text, int | float):
        return float(text) * UNITS[bare_unit]
    value = text.strip().lower()
    if _BARE.fullmatch(value):
        return float(value) * UNITS[bare_unit]
    parts = _PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise typer.BadParameter(f"{text!r} is not a duration; {HINT}")
    return sum(float(number) * UNITS[unit] for number, unit in parts)


def seconds(text: str | float) -> float:
    """Parser of an option in seconds (a bare number is seconds)."""
    return parse_duration(text, "s")


def minutes(text: str | float) -> int:
    """Parser of an option in whole minutes (a bare number is minutes; `90s` rounds up)."""
    return math.ceil(parse_duration(text, "m") / 60.0)
