"""`dumont fmt`: canonical layout of spec files, comments kept.

A conservative, line-based formatter (a YAML round trip would drop comments):
- indentation: 2 spaces per level (lists stay where they are relative to their key);
- `key:   value` -> `key: value`, `-   item` -> `- item`;
- no trailing whitespace, at most one blank line in a row, exactly one final newline;
- block scalars (`|`, `>`) keep their content byte for byte, only shifted with their key;
- a tab in indentation is an error (YAML forbids it).

Safety net: the formatted text must load to exactly the same data as the original, otherwise the
file is left alone with an error. `format_text` is pure; `format_file` writes atomically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from dumont_plan.errors import SpecError
from dumont_plan.loader.yamlmarks import parse_yaml

STEP = 2
_KEY_VALUE = re.compile(r"^([A-Za-z0-9_$./-]+|\"[^\"]*\"|'[^']*') *: +(\S.*)$")
_KEY_ONLY = re.compile(r"^([A-Za-z0-9_$./-]+|\"[^\"]*\"|'[^']*') *:$")
_BLOCK = re.compile(r"^[|>][0-9+-]*\s*(#.*)?$")
_BLOCK_EXPLICIT = re.compile(r"^[|>][+-]?[0-9]")


_STARTS_VALUE = ("", ":", "-", "[", "{", ",", "?")


def _scan(text: str, quote: str | None = None, depth: int = 0) -> tuple[int, str | None]:
    """(flow depth, open quote) at the end of one line, given those at its start.

    A quote or bracket opens something only where a value starts (after `key:`, `- `, `[`, `{`
    or `,`): in `command: echo 'x` the quote is just a character of the plain scalar.
    """
    last = ""  # last non-space character outside quotes
    previous = " "
    index = 0
    while index < len(text):
        char = text[index]
        if quote == "'":
            if char == "'":
                if index + 1 < len(text) and text[index + 1] == "'":
                    index += 1
                else:
                    quote = None
                    last = "'"
        elif quote == '"':
            if char == "\\":
                index += 1
            elif char == '"':
                quote = None
                last = '"'
        elif char == "#" and previous in " \t":
            break
        elif char in "'\"" and (last in _STARTS_VALUE or (depth > 0 and last in "[{,:")):
            quote = char
        elif char in "[{" and (last in _STARTS_VALUE or depth > 0):
            depth += 1
            last = char
        elif char in "]}" and depth > 0:
            depth -= 1
            last = char
        elif char not in " \t":
            last = char
        previous = char
        index += 1
    return depth, quote


@dataclass
class _State:
    out: list[str] = field(default_factory=list)
    stack: list[tuple[int, int]] = field(default_factory=list)  # (old column, new column)
    pending: list[tuple[int, str]] = field(default_factory=list)  # comments/blanks to place
    block: tuple[int, int, bool] | None = None  # (old parent col, new parent col, explicit)
    block_base: int | None = None
    carry: tuple[int, int, str | None] | None = None  # open flow/quote: (delta, depth, quote)


def _new_indent(state: _State, old: int) -> int:
    while state.stack and state.stack[-1][0] > old:
        state.stack.pop()
    if not state.stack:
        state.stack.append((old, 0))
        return 0
    top_old, top_new = state.stack[-1]
    if top_old == old:
        return top_new
    state.stack.append((old, top_new + STEP))
    return top_new + STEP


def _flush(state: _State, old: int | None, new: int | None) -> None:
    blank = False
    for col, text in state.pending:
        if not text:
            blank = True
            continue
        if blank and state.out:
            state.out.append("")
        blank = False
        mapped = dict(state.stack).get(col)
        indent = new if col == old and new is not None else mapped if mapped is not None else col
        state.out.append(" " * indent + text)
    if blank and state.out and old is not None:
        state.out.append("")
    state.pending.clear()


def _block_line(state: _State, block: tuple[int, int, bool], line: str) -> bool:
    """Handle a line inside a block scalar (`block`: state.block); False when it has ended."""
    parent_old, parent_new, explicit = block
    stripped = line.strip(" ")
    indent = len(line) - len(line.lstrip(" "))
    if not stripped:
        if state.block_base is not None and indent > state.block_base:
            state.out.append(" " * (indent - state.block_base + parent_new + STEP) + "")
        else:
            state.out.append("")
        return True
    if indent <= parent_old:
        state.block = None
        state.block_base = None
        return False
    if explicit:
        state.out.append(" " * (indent - parent_old + parent_new) + line.lstrip(" "))
        return True
    if state.block_base is None:
        state.block_base = indent
    state.out.append(" " * (indent - state.block_base + parent_new + STEP) + line.lstrip(" "))
    return True


def _content_line(state: _State, line: str) -> None:
    body = line.lstrip(" ")
    old = len(line) - len(body)
    body = body.rstrip()
    if body in ("---", "...") or body.startswith(("--- ", "%")):
        _flush(state, None, None)
        state.stack.clear()
        state.out.append(body)
        return
    new = _new_indent(state, old)
    _flush(state, old, new)
    col_old, col_new = old, new
    prefix = ""
    while body == "-" or body.startswith("- "):
        rest = body[1:].lstrip(" ")
        spaces = len(body) - 1 - len(rest)
        prefix += "- "
        col_old += 1 + spaces
        col_new += STEP
        state.stack.append((col_old, col_new))
        body = rest
        if not body:
            prefix = prefix.rstrip()
            break
    match = _KEY_VALUE.match(body)
    if match:
        body = f"{match.group(1)}: {match.group(2)}"
        value = match.group(2)
    else:
        key_only = _KEY_ONLY.match(body)
        if key_only:
            body = f"{key_only.group(1)}:"
        value = body
    state.out.append(" " * new + prefix + body)
    if _BLOCK.match(value) and (match or prefix):
        state.block = (col_old, col_new, bool(_BLOCK_EXPLICIT.match(value)))
        return
    depth, quote = _scan(body)
    if depth > 0 or quote:
        state.carry = (new - old, depth, quote)


def _carry_line(state: _State, carry: tuple[int, int, str | None], line: str) -> None:
    """A line continuing an open flow collection (shifted) or quoted string (kept as is)."""
    delta, depth, quote = carry
    if quote is not None:
        state.out.append(line)
    elif line.strip():
        indent = len(line) - len(line.lstrip(" "))
        state.out.append(" " * max(indent + delta, 0) + line.strip())
    else:
        state.out.append("")
    depth, quote = _scan(line, quote, depth)
    state.carry = (delta, depth, quote) if depth > 0 or quote else None


def format_text(text: str, file: str = "<spec>") -> str:
    """The canonical layout of a spec's text; SpecError on a tab in indentation."""
    state = _State()
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for number, raw in enumerate(lines, start=1):
        if state.block is not None and _block_line(state, state.block, raw):
            continue
        if state.carry is not None:
            _carry_line(state, state.carry, raw)
            continue
        leading = raw[: len(raw) - len(raw.lstrip(" \t"))]
        if "\t" in leading and raw.strip():
            raise SpecError(
                "tab character in indentation",
                "YAML indents with spaces only; replace the tab with spaces",
                file=file,
                line=number,
                col=leading.index("\t") + 1,
            )
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            state.pending.append((len(raw) - len(raw.lstrip(" ")), stripped))
            continue
        _content_line(state, raw)
    _flush(state, None, None)
    while state.out and not state.out[-1].strip():
        state.out.pop()
    return "\n".join(line.rstrip() if line.strip() == "" else line for line in state.out) + "\n"


def _data(text: str) -> Any:
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def check_same(original: str, formatted: str, file: str) -> None:
    """SpecError unless both texts load to the same data."""
    try:
        same = _data(original) == _data(formatted)
    except Exception:  # anything unreadable counts as "changed": refuse rather than guess
        same = False
    if not same:
        raise SpecError(
            f"{file}: cannot be formatted safely; left unchanged",
            "fix the layout by hand (or report it: `dumont fmt` should handle it)",
        )


def format_spec(text: str, file: str) -> str:
    """Validate the YAML, format, and make sure the meaning did not change."""
    errors: list[SpecError] = []
    parse_yaml(text, file, errors)
    if errors:
        raise errors[0]
    formatted = format_text(text, file)
    if formatted != text:
        check_same(text, formatted, file)
    return formatted
