"""Offline spec commands: `dumont validate`, `dumont fmt`, `dumont schema`.

None of them talks to a server. The option types and `load_from_options` are shared with the
plan/apply commands so every command reads specs the same way:

    def plan(files: FilesOpt = None, var: VarsOpt = None, var_file: VarFilesOpt = None):
        stack = load_from_options(files, var, var_file)
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dumont_plan.cli.output import emit_json
from dumont_plan.errors import DumontError, SpecError, SpecErrors
from dumont_plan.text import plural

if TYPE_CHECKING:
    from dumont_plan.spec.stack import Stack

FilesOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--file",
        "-f",
        help=(
            "Spec file or folder (repeatable; a folder means its *.yaml, *.yml and dumontfile). "
            "Default: dumont.yaml, dumont.yml or dumontfile here."
        ),
    ),
]
VarsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--var",
        metavar="NAME=VALUE",
        help="Set a variable: --var NAME=VALUE (repeatable; wins over all).",
    ),
]
VarFilesOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--var-file", help="YAML or JSON file of NAME: value variables (repeatable, in order)."
    ),
]


def load_from_options(
    files: list[Path] | None,
    var: list[str] | None,
    var_file: list[Path] | None,
    *,
    check_secrets: bool = False,
) -> Stack:
    """The Stack for the `-f/--var/--var-file` options, from the working directory."""
    from dumont_plan.loader import load_stack, parse_var_args  # heavy: yaml, pydantic

    variables = parse_var_args(var or [])
    stack = load_stack(
        files or None,
        Path.cwd(),
        variables,
        var_file or [],
        os.environ,
        check_secrets=check_secrets,
    )
    if stack.warnings:
        from dumont_plan.cli.output import err_console

        for warning in stack.warnings:
            err_console.print(f"[yellow]warning:[/] {warning}", markup=True, highlight=False)
    return stack


def validate(
    files: FilesOpt = None,
    var: VarsOpt = None,
    var_file: VarFilesOpt = None,
    check_secrets: bool = typer.Option(
        False,
        "--check-secrets",
        help="Also check that every ${secret.NAME} is set (environment or secrets file).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Check the spec offline: syntax, types, ranges, names, references, cycles.

    Prints `Valid: …` or every problem as `file:line:col path: what; fix` (exit 1).
    """
    try:
        stack = load_from_options(files, var, var_file, check_secrets=check_secrets)
    except SpecError as exc:
        if not as_json:
            raise
        errors = exc.errors if isinstance(exc, SpecErrors) else [exc]
        emit_json(
            {
                "valid": False,
                "errors": [
                    {"file": e.file, "line": e.line, "col": e.col, "message": str(e)}
                    for e in errors
                ],
            }
        )
        raise typer.Exit(1) from exc
    counts: dict[str, int] = {}
    for resource in stack.resources.values():
        counts[resource.kind] = counts.get(resource.kind, 0) + 1
    if as_json:
        emit_json(
            {
                "valid": True,
                "project": stack.project,
                "files": stack.files,
                "resources": sorted(stack.resources),
                "errors": [],
            }
        )
        return
    detail = ", ".join(plural(n, kind) for kind, n in counts.items())
    total = plural(len(stack.resources), "resource")
    # Plain text: rich is not imported for this one line (benchmarks/startup.py).
    typer.echo(
        f"Valid: {total}{f' ({detail})' if detail else ''} in project {stack.project} "
        f"({', '.join(stack.files)})."
    )


def fmt(
    files: FilesOpt = None,
    check: bool = typer.Option(
        False, "--check", help="Change nothing; exit 1 and list the files that need formatting."
    ),
    diff: bool = typer.Option(
        False, "--diff", help="Show the changes as a unified diff; change no file."
    ),
) -> None:
    """Rewrite spec files in the canonical layout (2-space indents, tidy spacing; comments kept).

    With --check, exits 1 listing the files that would change, 0 when all are formatted;
    --diff shows the changes and writes nothing (as `black --diff`).
    """
    from dumont_plan.cli.output import console
    from dumont_plan.files import write_atomic
    from dumont_plan.loader import discover, display_path
    from dumont_plan.loader.fmt import format_spec
    from dumont_plan.loader.inputs import read_text

    cwd = Path.cwd()
    changed: list[str] = []
    for path in discover(files or None, cwd):
        shown = display_path(path, cwd)
        text = read_text(path, shown)
        formatted = format_spec(text, shown)
        if formatted == text:
            continue
        changed.append(shown)
        if diff:
            lines = difflib.unified_diff(
                text.splitlines(keepends=True),
                formatted.splitlines(keepends=True),
                fromfile=f"{shown} (before)",
                tofile=f"{shown} (formatted)",
            )
            console.print("".join(lines), markup=False, highlight=False, end="")
        if check:
            console.print(f"would reformat {shown}", markup=False)
        elif not diff:
            write_atomic(path, formatted, mode=None)
            console.print(f"formatted {shown}", markup=False)
    if check and changed:
        raise DumontError(
            f"{plural(len(changed), 'file')} not in canonical format", "run `dumont fmt`"
        )


def schema(
    markdown: bool = typer.Option(
        False, "--markdown", help="Print the spec reference as Markdown instead."
    ),
) -> None:
    """Print the JSON Schema of dumont.yaml (for editors: yaml-language-server, VS Code)."""
    from dumont_plan.spec.schema import schema_text, spec_reference

    text = spec_reference() if markdown else schema_text()
    typer.echo(text, nl=False)


def register(app: typer.Typer) -> None:
    """Add validate, fmt and schema to the top-level app."""
    app.command("validate")(validate)
    app.command("fmt")(fmt)
    app.command("schema")(schema)


__all__ = ["FilesOpt", "VarFilesOpt", "VarsOpt", "load_from_options", "register"]
