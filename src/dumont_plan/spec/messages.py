"""Plain-words messages for pydantic validation errors: what is wrong and what to do.

    describe(JobSpec, {"type": "less_than_equal", "loc": ("num_gpus",), "input": 9, ...})
        -> Problem(loc=("num_gpus",), on_key=False,
                   text="9 is above the limit of 8", hint="use 1–8.")

The loader adds the location (`file:line:col path:`); nothing here knows about files.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from typing import Any

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel

from dumont_plan.spec.common import NAME_RULE, WrittenBool

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    loc: Loc  # where, inside the validated value
    text: str  # what is wrong
    hint: str | None = None  # what to do
    on_key: bool = False  # point at the key (unknown field, bad name) rather than the value


def show(value: Any) -> str:
    """A value as the user wrote it in YAML, short."""
    if value is None:
        return "null"
    if isinstance(value, WrittenBool):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return repr(text)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return str(value)


def path_text(loc: Loc) -> str:
    """`("jobs", "train", "pip_packages", 2)` -> `jobs.train.pip_packages[2]`."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def suggest(word: str, choices: list[str]) -> str | None:
    """The closest choice to a misspelled word, if one is close enough."""
    matches = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not matches:
        lowered = word.lower()
        matches = [c for c in choices if c.lower() == lowered]
        matches = matches or [c for c in choices if len(word) >= 3 and c.startswith(word)]
    return matches[0] if matches else None


def _unwrap(annotation: Any) -> Any:
    """`Annotated[X, ...]` -> X; `X | None` -> X."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return annotation


def model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model that validates the value at `loc` (for field names), if it is a model."""
    current: Any = model
    parts = list(loc)
    while parts:
        if isinstance(current, type) and issubclass(current, BaseModel):
            part = parts.pop(0)
            info = current.model_fields.get(str(part))
            if info is None:
                return None
            current = _unwrap(info.annotation)
        elif typing.get_origin(current) is dict:
            parts.pop(0)
            current = _unwrap(typing.get_args(current)[1])
        elif typing.get_origin(current) is list:
            parts.pop(0)
            current = _unwrap(typing.get_args(current)[0])
        else:
            return None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _bounds(model: type[BaseModel], loc: Loc) -> tuple[Any, Any]:
    """(lowest, highest) allowed for the numeric field at `loc`, each None when unbounded."""
    parent = model_at(model, loc[:-1]) if loc else None
    if parent is None or not loc:
        return None, None
    info = parent.model_fields.get(str(loc[-1]))
    low = high = None
    for item in info.metadata if info else ():
        if isinstance(item, Ge | Gt):
            low = item.ge if isinstance(item, Ge) else item.gt
        if isinstance(item, Le | Lt):
            high = item.le if isinstance(item, Le) else item.lt
    return low, high


def _literal_choices(model: type[BaseModel], loc: Loc) -> list[str]:
    parent = model_at(model, loc[:-1]) if loc else None
    info = parent.model_fields.get(str(loc[-1])) if parent else None
    if info is None:
        return []
    annotation = _unwrap(info.annotation)
    if typing.get_origin(annotation) is not typing.Literal:
        return []
    return [str(choice) for choice in typing.get_args(annotation)]


def _num(value: Any) -> str:
    """2.0 -> "2"; other values as shown."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return show(value)


def _range_hint(low: Any, high: Any) -> str:
    if low is not None and high is not None:
        return f"use {_num(low)}." if low == high else f"use {_num(low)}–{_num(high)}."
    if low is not None:
        return f"use {_num(low)} or more."
    return f"use {_num(high)} or less."


EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
HINTS = {
    "string_type": "put the value in quotes",
    "list_type": "write a YAML list, e.g. [a, b] or one '- item' per line",
    "dict_type": "write 'key: value' pairs indented under it",
    "model_type": "write 'key: value' pairs indented under it",
}


def describe(model: type[BaseModel], error: Any) -> Problem:
    """One pydantic error (an entry of `ValidationError.errors()`) in plain words."""
    kind: str = error["type"]
    loc: Loc = tuple(error["loc"])
    value = error.get("input")
    ctx = error.get("ctx") or {}
    if loc and loc[-1] == "[key]":
        return Problem(loc[:-1], f"invalid name {show(loc[-2])}", NAME_RULE + ".", on_key=True)
    if kind == "extra_forbidden":
        parent = model_at(model, loc[:-1])
        fields = list(parent.model_fields) if parent else []
        # A model may say where a misplaced field belongs (a fine-tune's `epochs`: `config`).
        home = (getattr(parent, "NESTED_FIELDS", None) or {}).get(str(loc[-1]))
        if home:
            text = f"unknown field here; it belongs under `{home}`"
            return Problem(loc, text, f"write {home}: {{{loc[-1]}: ...}}", True)
        guess = suggest(str(loc[-1]), fields)
        if guess:
            return Problem(loc, f"unknown field; did you mean '{guess}'?", on_key=True)
        return Problem(loc, "unknown field", "use one of: " + ", ".join(fields) + ".", True)
    if kind == "missing":
        return Problem(loc[:-1], f"missing required field '{loc[-1]}'", f"add {loc[-1]}: ...")
    if kind in EXPECTED:
        text = f"expected {EXPECTED[kind]}, got {show(value)}"
        hint = HINTS.get(kind)
        if value is None:
            hint = "give it a value"
        elif kind == "string_type" and not isinstance(value, bool):
            hint = None
        return Problem(loc, text, hint + "." if hint else None)
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        low, high = _bounds(model, loc)
        if kind == "greater_than_equal":
            text = f"{show(value)} is below the minimum of {_num(ctx.get('ge'))}"
        elif kind == "greater_than":
            text = f"{show(value)} is too low"
            if high is None:
                return Problem(loc, text, f"use a number above {_num(ctx.get('gt'))}.")
        elif kind == "less_than_equal":
            text = f"{show(value)} is above the limit of {_num(ctx.get('le'))}"
        else:
            text = f"{show(value)} is too high"
        if low is not None and low == high:
            text = f"{show(value)} is not supported"
        return Problem(loc, text, _range_hint(low, high))
    if kind == "literal_error":
        choices = _literal_choices(model, loc) or [str(ctx.get("expected", ""))]
        guess = suggest(str(value), choices) if isinstance(value, str) else None
        text = f"{show(value)} is not one of: {', '.join(choices)}"
        return Problem(loc, text, f"did you mean '{guess}'?" if guess else None)
    if kind == "string_too_short":
        return Problem(loc, "must not be empty")
    if kind == "string_too_long":
        return Problem(loc, f"is too long (at most {ctx.get('max_length')} characters)")
    if kind == "string_pattern_mismatch":
        return Problem(loc, f"invalid name {show(value)}", NAME_RULE + ".")
    if kind == "value_error":
        message = str(ctx.get("error") or error.get("msg", ""))
        text, _, hint = message.partition("; ")
        return Problem(loc, text, hint + "." if hint and not hint.endswith(".") else hint or None)
    return Problem(loc, f"{error.get('msg', 'invalid value')} (got {show(value)})")
