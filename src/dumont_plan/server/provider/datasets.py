"""Fine-tune datasets: what a record of each format must hold, and a file's records checked.

Formats (contract §6.3): `alpaca` records are `{instruction, input?, output}`; `sharegpt`
records are `{conversations: [{from|role, value|content}, ...]}` with roles human, user, gpt,
assistant or system; `raw` records are `{text}`. A `.jsonl` file holds one record per line
(blank lines skipped); a `.json` file holds one array of records. `check_file` reads a file
from disk (never the whole of a `.jsonl`), checks every record against the declared format or
the one its first record shows, and raises `DatasetError` naming the first bad record's line
and field, with the fix.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dumont_plan.errors import DatasetError

FORMATS = ("alpaca", "sharegpt", "raw")
SUFFIXES = (".json", ".jsonl")
ROLES = ("human", "user", "gpt", "assistant", "system")
SHAPES = {
    "alpaca": 'an alpaca record is {"instruction": ..., "input": ... (optional), "output": ...}',
    "sharegpt": 'a sharegpt record is {"conversations": [{"from": "human", "value": ...}, ...]}',
    "raw": 'a raw record is {"text": ...}',
}


@dataclass(frozen=True)
class Checked:
    format: str
    records: int


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(
        type(value), "a list" if isinstance(value, list) else "an object"
    )


def _string(record: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    """Why `record[key]` is not a usable string, or None when it is."""
    if key not in record or record[key] is None:
        return f'has no "{key}"' if required else None
    value = record[key]
    if not isinstance(value, str):
        return f'has "{key}" as {_type_name(value)}; it must be a string'
    if required and not value.strip():
        return f'has an empty "{key}"'
    return None


def record_problem(record: Any, fmt: str) -> tuple[str, str] | None:
    """(field, what is wrong) for a record that is not of format `fmt`, or None."""
    if not isinstance(record, dict):
        return "", f"is {_type_name(record)}, not a JSON object"
    if fmt == "alpaca":
        for key, required in (("instruction", True), ("input", False), ("output", True)):
            problem = _string(record, key, required=required)
            if problem:
                return key, problem
        return None
    if fmt == "raw":
        problem = _string(record, "text")
        return ("text", problem) if problem else None
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        found = "no" if turns is None else _type_name(turns) + " as"
        return "conversations", f'has {found} "conversations"; it must be a non-empty list'
    for index, turn in enumerate(turns):
        where = f"conversations[{index}]"
        if not isinstance(turn, dict):
            return where, f"has {where} as {_type_name(turn)}; each turn is a JSON object"
        role_key = "from" if "from" in turn else "role"
        role = turn.get(role_key)
        if role not in ROLES:
            shown = "no from/role" if role_key not in turn else f"{role_key} {role!r}"
            return f"{where}.{role_key}", f"has {shown} in {where}; use one of {', '.join(ROLES)}"
        text_key = "value" if "value" in turn else "content"
        if not isinstance(turn.get(text_key), str):
            return f"{where}.{text_key}", f"has no string value/content in {where}"
    return None


def detect_format(record: Any) -> str | None:
    """The format a record shows by its keys, or None."""
    if isinstance(record, dict):
        if "conversations" in record:
            return "sharegpt"
        if "instruction" in record:
            return "alpaca"
        if "text" in record:
            return "raw"
    return None


def _jsonl_records(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DatasetError(
                    f"line {number} is not UTF-8 text; save the file as UTF-8",
                    ("line", number),
                ) from None
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except RecursionError:
                raise DatasetError(
                    f"line {number} is nested too deeply to read", ("line", number)
                ) from None
            except ValueError as exc:
                raise DatasetError(
                    f"line {number} is not valid JSON ({exc}); a .jsonl file holds one JSON "
                    "record per line",
                    ("line", number),
                ) from None
            yield number, record


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


def _bad_json(text: str, index: int, what: str) -> DatasetError:
    line = text.count("\n", 0, index) + 1
    return DatasetError(f"line {line} is not valid JSON: {what}", ("line", line))


def _json_records(path: Path) -> Iterator[tuple[int, Any]]:
    """The elements of the file's top-level array, each with the line it starts on."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DatasetError("the file is not UTF-8 text; save it as UTF-8") from None
    decoder = json.JSONDecoder()
    index = _skip_space(text, 0)
    if not text.startswith("[", index):
        raise DatasetError(
            "a .json dataset is a JSON array of records ([{...}, {...}]); for one record per "
            "line, name the file .jsonl",
            ("line", text.count("\n", 0, index) + 1),
        )
    index = _skip_space(text, index + 1)
    line, counted = 1, 0
    if text.startswith("]", index):
        return
    while True:
        try:
            record, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError as exc:
            raise _bad_json(text, exc.pos, exc.msg) from None
        except RecursionError:
            raise _bad_json(text, index, "a record nested too deeply to read") from None
        line += text.count("\n", counted, index)
        counted = index
        yield line, record
        index = _skip_space(text, end)
        if text.startswith(",", index):
            index = _skip_space(text, index + 1)
        elif text.startswith("]", index):
            break
        else:
            raise _bad_json(text, index, "expected ',' or ']' after a record")
    if _skip_space(text, index + 1) != len(text):
        raise _bad_json(text, index + 1, "extra data after the array")


def iter_records(path: Path, suffix: str) -> Iterator[tuple[int, Any]]:
    """(line, record) of every record of a .json or .jsonl file."""
    return _jsonl_records(path) if suffix == ".jsonl" else _json_records(path)


def check_file(path: Path, suffix: str, declared: str | None) -> Checked:
    """Check every record; the format is `declared`, else what the first record shows."""
    fmt = declared
    count = 0
    for line, record in iter_records(path, suffix):
        count += 1
        if fmt is None:
            fmt = detect_format(record)
            if fmt is None:
                raise DatasetError(
                    f"line {line}: record {count} matches no dataset format; "
                    + "; ".join(SHAPES.values())
                    + " (or pass format=alpaca|sharegpt|raw)",
                    ("line", line),
                )
        problem = record_problem(record, fmt)
        if problem is not None:
            field, what = problem
            raise DatasetError(
                f"line {line}: record {count} {what}; {SHAPES[fmt]}",
                ("line", line, *([field] if field else [])),
            )
    if fmt is None or count == 0:
        raise DatasetError("the file holds no records; add at least one")
    return Checked(fmt, count)
