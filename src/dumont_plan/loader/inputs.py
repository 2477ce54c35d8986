"""What the loader reads besides YAML values: which files, and the variables' values.

File discovery: `-f PATH` (repeatable; a folder means every *.yaml, *.yml and dumontfile in
it, sorted), else the first of dumont.yaml, dumont.yml, dumontfile in the working directory.

Variable precedence, later wins: `variables.NAME.default` < `DUMONT_VAR_NAME` < `--var-file`
(in the order given) < `--var NAME=VALUE` (in the order given).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dumont_plan.errors import SpecError
from dumont_plan.loader.yamlmarks import parse_yaml
from dumont_plan.spec.common import VAR_NAME_RE
from dumont_plan.spec.messages import suggest

DEFAULT_FILES = ("dumont.yaml", "dumont.yml", "dumontfile")
FOLDER_PATTERNS = ("*.yaml", "*.yml", "dumontfile")
ENV_PREFIX = "DUMONT_VAR_"
_VAR_NAME = re.compile(VAR_NAME_RE)


def display_path(path: Path, cwd: Path) -> str:
    """`path` relative to `cwd` when inside it (as messages show it), else as given."""
    try:
        return str(path.resolve().relative_to(cwd.resolve()))
    except ValueError:
        return str(path)


def discover(paths: Sequence[Path] | None, cwd: Path) -> list[Path]:
    """The spec files to load, in order, without duplicates."""
    if not paths:
        for name in DEFAULT_FILES:
            if (cwd / name).is_file():
                return [cwd / name]
        where = "this folder" if cwd.resolve() == Path.cwd().resolve() else str(cwd)
        raise SpecError(
            f"no spec file in {where}: looked for {', '.join(DEFAULT_FILES)}",
            "create dumont.yaml, or pass -f PATH",
        )
    found: list[Path] = []
    for given in paths:
        path = given if given.is_absolute() else cwd / given
        if path.is_dir():
            inside = sorted(
                {p for pattern in FOLDER_PATTERNS for p in path.glob(pattern) if p.is_file()}
            )
            if not inside:
                raise SpecError(
                    f"{given}: no *.yaml, *.yml or dumontfile in this folder",
                    "pass a folder holding spec files, or the file itself",
                )
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            raise SpecError(f"{given}: no such file or folder", "check the -f path")
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def read_text(path: Path, shown: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"{shown}: cannot read: {exc.strerror}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise SpecError(
            "the file is not UTF-8 text", "save it as UTF-8", file=shown, line=line, col=col
        ) from exc


def parse_var_args(items: Sequence[str]) -> dict[str, str]:
    """`--var NAME=VALUE` words -> {NAME: VALUE}; a malformed one is a SpecError."""
    values: dict[str, str] = {}
    for item in items:
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq:
            raise SpecError(
                f"--var {item}: expected NAME=VALUE", f'e.g. --var {name or "gpu"}="RTX 4090"'
            )
        if not _VAR_NAME.match(name):
            raise SpecError(
                f"--var {item}: '{name}' is not a variable name",
                "use letters, digits and '_', not starting with a digit",
            )
        values[name] = value
    return values


def env_variables(env: Mapping[str, str]) -> dict[str, str]:
    """`DUMONT_VAR_NAME=value` -> {NAME: value}."""
    return {
        key[len(ENV_PREFIX) :]: value
        for key, value in env.items()
        if key.startswith(ENV_PREFIX) and _VAR_NAME.match(key[len(ENV_PREFIX) :])
    }


def read_var_file(path: Path, cwd: Path) -> dict[str, Any]:
    """A `--var-file` (YAML or JSON): a mapping of variable names to values."""
    full = path if path.is_absolute() else cwd / path
    shown = display_path(full, cwd)
    if not full.is_file():
        raise SpecError(f"--var-file {path}: no such file", "check the path")
    errors: list[SpecError] = []
    doc = parse_yaml(read_text(full, shown), shown, errors)
    if errors:
        raise errors[0]
    if doc is None or doc.data is None:
        return {}
    if not isinstance(doc.data, dict):
        raise doc.error((), "a --var-file must be a mapping of NAME: value", "e.g. gpu: RTX 4090")
    for name in doc.data:
        if not _VAR_NAME.match(name):
            raise doc.error(
                (name,),
                f"'{name}' is not a variable name",
                "use letters, digits and '_', not starting with a digit",
                key=True,
            )
    return dict(doc.data)


def resolve_variables(
    defaults: Mapping[str, Any],
    env: Mapping[str, str],
    var_files: Sequence[Path],
    cli: Mapping[str, str],
    cwd: Path,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """The value of every variable, by precedence (see the module doc).

    A `--var` or `--var-file` value of a variable the spec does not declare is harmless (no
    `{{ var.X }}` reads it) but reported in `warnings`: it is most often a typo.
    """
    values = dict(defaults)
    values.update(env_variables(env))
    given: dict[str, str] = {}
    for path in var_files:
        from_file = read_var_file(Path(os.fspath(path)), cwd)
        values.update(from_file)
        given.update(dict.fromkeys(from_file, f"--var-file {path}"))
    values.update(cli)
    given.update(dict.fromkeys(cli, "--var"))
    if warnings is not None:
        for name, where in given.items():
            if name not in defaults:
                close = suggest(name, list(defaults))
                hint = f"; did you mean {close!r}?" if close else ""
                warnings.append(
                    f"{where} sets {name!r}, which no file declares under `variables:`; "
                    f"it is ignored{hint}"
                )
    return values
