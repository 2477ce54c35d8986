"""errors.py holds every exception class of dumont_plan, and its docstring draws them all.

Read from the source with `ast`, like tests/test_architecture.py: a class is an exception when
one of its bases is a built-in exception or an exception class of the package (by name).
"""

from __future__ import annotations

import ast
import builtins
import inspect
import re
from pathlib import Path

import dumont_plan.errors as errors
from dumont_plan.errors import DumontError, InternalSignal

SRC = Path(__file__).resolve().parents[1] / "src" / "dumont_plan"


def base_names(node: ast.ClassDef) -> list[str]:
    names = []
    for base in node.bases:
        if isinstance(base, ast.Name):
            names.append(base.id)
        elif isinstance(base, ast.Attribute):
            names.append(base.attr)
    return names


def exception_classes() -> dict[str, list[str]]:
    """`module path -> names of the exception classes defined there`, for the whole package."""
    classes: list[tuple[str, str, list[str]]] = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = str(path.relative_to(SRC))
        classes += [
            (where, n.name, base_names(n)) for n in ast.walk(tree) if isinstance(n, ast.ClassDef)
        ]
    known = {
        name
        for name in dir(builtins)
        if isinstance(getattr(builtins, name), type)
        and issubclass(getattr(builtins, name), BaseException)
    }
    changed = True
    while changed:  # a subclass of a package exception is one too, wherever it is defined
        changed = False
        for _, name, bases in classes:
            if name not in known and any(b in known for b in bases):
                known.add(name)
                changed = True
    found: dict[str, list[str]] = {}
    for where, name, bases in classes:
        if any(b in known for b in bases):
            found.setdefault(where, []).append(name)
    return found


def test_every_exception_class_is_defined_in_errors_py() -> None:
    found = exception_classes()
    assert "DumontError" in found["errors.py"]  # the scan sees classes
    assert {where: names for where, names in found.items() if where != "errors.py"} == {}


def test_the_docstring_draws_every_class() -> None:
    defined = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == errors.__name__
    }
    drawn = set(re.findall(r"[├└]── (\w+)", errors.__doc__ or "")) | {
        "DumontError",
        "InternalSignal",
    }
    assert defined == drawn


def test_user_facing_errors_are_dumont_errors_and_signals_are_not() -> None:
    for name, value in vars(errors).items():
        if inspect.isclass(value) and issubclass(value, BaseException):
            if value.__module__ != errors.__name__:
                continue
            assert issubclass(value, DumontError) != issubclass(value, InternalSignal), name


def test_exit_codes_of_the_tree() -> None:
    assert errors.WaitTimeoutError("x").exit_code == 4
    assert errors.WaitFailedError("x").exit_code == 5
    assert errors.ApplyInterrupted("x").exit_code == 130
    assert errors.StateError("x").exit_code == 1
    assert errors.CycleError(["a", "b", "a"]).exit_code == 1
    assert str(errors.CycleError(["a", "b", "a"])) == "dependency cycle: a -> b -> a"
    refused = errors.InstanceError(409, "Instance 3 is paused")
    assert (refused.status, refused.message, str(refused)) == (
        409,
        "Instance 3 is paused",
        "Instance 3 is paused",
    )
    assert errors.OfferQueryError("order_by: unknown field").status == 400
