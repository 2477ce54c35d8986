"""DESIGN §1 import rules, read from the source with `ast` (nothing is imported or run).

Imports flow one way: errors <- spec <- loader; spec <- kinds (pure) <- plan <- apply <- cli;
the kinds' ops (API calls) sit beside apply; the client knows only errors and its own wire
models; the server never imports client, plan or cli. Each third-party library has one home.
Every import counts: top level, inside functions (the CLI's lazy imports) and under `if
TYPE_CHECKING`. Exceptions are listed here with their reason. The planner's purity is also
checked by importing it in a fresh interpreter (`sys.modules`).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "dumont_plan"

# Modules every layer may use: leaf modules of standard-library-only constants and helpers,
# and the read models of the API's objects (pydantic; the client returns them, the kinds' pure
# parts and the planner read them without loading the client).
LEAVES = {"dumont_plan.errors", "dumont_plan.wire", "dumont_plan.wire_models"}

# layer -> the other top-level parts of dumont_plan it may import (besides itself and LEAVES).
# For `kinds` the rule is its pure part's (OPS_ALLOWED is its ops modules').
ALLOWED = {
    "dumont_plan.spec": set(),
    # secrets: the loader checks `${secret.NAME}` references against the secret store.
    "dumont_plan.loader": {"dumont_plan.spec", "dumont_plan.secrets"},
    # offers: the race's offer selection, which prices an instance.
    "dumont_plan.kinds": {"dumont_plan.spec", "dumont_plan.offers"},
    "dumont_plan.offers": set(),
    # kinds: the per-kind field tables and decisions; ledger: what was applied before.
    "dumont_plan.plan": {
        "dumont_plan.spec",
        "dumont_plan.kinds",
        "dumont_plan.state",
        "dumont_plan.secrets",
    },
    "dumont_plan.client": set(),
}

# A kind's ops (`kinds/ops.py`, `kinds/<kind>_ops.py`) call the API, the instance's through the
# wizard's race; the registry names them by module, never imports them.
OPS_ALLOWED = {
    "dumont_plan.kinds",
    "dumont_plan.client",
    "dumont_plan.wizard",
    "dumont_plan.spec",
    "dumont_plan.offers",
}

# Nothing reachable from the planner or the kinds' pure parts leads to these (nor to httpx):
# planning is pure, and `dumont plan -out` / `explain` / saved-plan checks load no client.
PURE_NEVER = ("dumont_plan.client", "dumont_plan.wizard", "dumont_plan.apply")

# The server may import nothing that leads (even indirectly) to these.
SERVER_NEVER = ("dumont_plan.client", "dumont_plan.plan", "dumont_plan.cli")

# third-party package -> the modules or packages (with everything below) that may import it.
HOMES = {
    "typer": ("dumont_plan.cli",),
    "fastapi": ("dumont_plan.server",),
    "starlette": ("dumont_plan.server",),
    "uvicorn": ("dumont_plan.server",),
    "jinja2": ("dumont_plan.loader",),
    "yaml": ("dumont_plan.loader",),
    "croniter": ("dumont_plan.server.provider.schedules", "dumont_plan.spec.schedule"),
    # cli/session.py builds the httpx.Client that DumontClient takes injected (DESIGN §1).
    # The serverless endpoints' request path proxies to its workers with httpx's async client.
    "httpx": (
        "dumont_plan.client",
        "dumont_plan.cli.session",
        "dumont_plan.server.provider.endpoint_proxy",
    ),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def sources() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


@cache
def imports_of(module: str) -> tuple[str, ...]:
    """Every absolute module name `module` imports (relative imports resolved)."""
    path = sources()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append(base)
            # `from pkg import sub` imports the module pkg.sub when there is one.
            found.extend(
                f"{base}.{alias.name}"
                for alias in node.names
                if f"{base}.{alias.name}" in sources()
            )
    return tuple(found)


def internal_imports(module: str) -> set[str]:
    """The dumont_plan modules `module` imports, with the packages each import runs."""
    out: set[str] = set()
    for name in imports_of(module):
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            parts = name.split(".")
            out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {m for m in out if m in sources() and m != module}


def part_of(module: str) -> str:
    """`dumont_plan.plan.build` -> `dumont_plan.plan`; a top-level module is its own part."""
    return ".".join(module.split(".")[:2])


def modules_in(part: str) -> list[str]:
    return [m for m in sources() if m == part or m.startswith(part + ".")]


def is_kind_ops(module: str) -> bool:
    """`dumont_plan.kinds.ops` and each `dumont_plan.kinds.<kind>_ops`."""
    return part_of(module) == "dumont_plan.kinds" and (
        module == "dumont_plan.kinds.ops" or module.endswith("_ops")
    )


def layer_modules(part: str) -> list[str]:
    """The modules a layer rule covers (for `kinds`: its pure part)."""
    return [m for m in modules_in(part) if not is_kind_ops(m)]


def pure_roots() -> list[str]:
    """The planner (render and cost included) and the kinds' pure parts."""
    return [*modules_in("dumont_plan.plan"), *layer_modules("dumont_plan.kinds")]


def reachable(start: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        module = todo.pop()
        for name in internal_imports(module):
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


def test_the_rules_see_the_imports() -> None:
    """Guards against a vacuous pass: known imports are found."""
    assert "yaml" in {n.split(".")[0] for n in imports_of("dumont_plan.loader.fmt")}
    assert "dumont_plan.errors" in internal_imports("dumont_plan.client.base")
    assert "dumont_plan.server.provider.jobs" in internal_imports("dumont_plan.server.routes.jobs")
    assert len(modules_in("dumont_plan.server")) > 10
    assert "dumont_plan.client" in reachable(["dumont_plan.kinds.job_ops"])
    assert {"dumont_plan.kinds.ops", "dumont_plan.kinds.job_ops"} <= {
        m for m in modules_in("dumont_plan.kinds") if is_kind_ops(m)
    }
    assert {"dumont_plan.kinds.job", "dumont_plan.kinds.registry"} <= set(pure_roots())


def test_errors_import_nothing_of_dumont_plan() -> None:
    assert internal_imports("dumont_plan.errors") == set()


def test_the_wire_models_import_only_the_other_leaves() -> None:
    assert internal_imports("dumont_plan.wire_models") <= {PACKAGE, *LEAVES}
    assert "dumont_plan.errors" in internal_imports("dumont_plan.wire_models")


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_layers_import_only_what_sits_below_them(part: str) -> None:
    allowed = {PACKAGE, part, *LEAVES, *ALLOWED[part]}
    wrong = sorted(
        f"{module} imports {name}"
        for module in layer_modules(part)
        for name in internal_imports(module)
        if part_of(name) not in allowed
    )
    assert wrong == []


def test_the_kinds_ops_import_only_the_client_the_wizard_and_below() -> None:
    allowed = {PACKAGE, *LEAVES, *OPS_ALLOWED}
    ops = [m for m in modules_in("dumont_plan.kinds") if is_kind_ops(m)]
    wrong = sorted(
        f"{module} imports {name}"
        for module in ops
        for name in internal_imports(module)
        if part_of(name) not in allowed
    )
    assert wrong == []


def test_the_planner_and_the_kinds_pure_parts_never_reach_the_client() -> None:
    """Not even indirectly: their whole import closure stays clear of the client and httpx."""
    closure = reachable(pure_roots()) | set(pure_roots())
    wrong = sorted(m for m in closure if part_of(m) in PURE_NEVER)
    httpx = sorted(m for m in closure if any(n.split(".")[0] == "httpx" for n in imports_of(m)))
    assert (wrong, httpx) == ([], [])


def test_importing_the_planner_loads_no_client() -> None:
    """The same, for real: a fresh interpreter importing them has none of these modules."""
    code = "; ".join(
        [
            "import sys",
            *(f"import {m}" for m in pure_roots()),
            "print(chr(10).join(sorted(sys.modules)))",
        ]
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "dumont_plan.plan.build" in loaded and "dumont_plan.plan.render" in loaded
    assert "pydantic" in loaded  # guards against a vacuous pass: the imports ran
    forbidden = ("httpx", *PURE_NEVER)
    wrong = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden)]
    assert wrong == []


@pytest.mark.parametrize("part", ["dumont_plan.plan", "dumont_plan.kinds", "dumont_plan.apply"])
def test_nothing_below_the_cli_imports_it(part: str) -> None:
    wrong = sorted(
        f"{module} imports {name}"
        for module in modules_in(part)
        for name in internal_imports(module)
        if part_of(name) == "dumont_plan.cli"
    )
    assert wrong == []


def test_server_never_reaches_client_plan_or_cli() -> None:
    """Not even indirectly: the server's whole import closure stays clear of them."""
    closure = reachable(modules_in("dumont_plan.server"))
    assert sorted(m for m in closure if part_of(m) in SERVER_NEVER) == []


def test_client_reaches_only_errors_and_its_wire_models() -> None:
    closure = reachable(modules_in("dumont_plan.client"))
    allowed = {PACKAGE, "dumont_plan.client", *LEAVES}
    assert sorted(m for m in closure if part_of(m) not in allowed) == []


@pytest.mark.parametrize("library", sorted(HOMES))
def test_each_third_party_library_has_one_home(library: str) -> None:
    homes = HOMES[library]

    def at_home(module: str) -> bool:
        return any(module == h or module.startswith(h + ".") for h in homes)

    users = sorted(
        module
        for module in sources()
        if any(name.split(".")[0] == library for name in imports_of(module))
    )
    assert users, f"nothing imports {library}: drop it from HOMES"
    assert [m for m in users if not at_home(m)] == []


def test_no_assert_statements_in_the_package() -> None:
    """`python -O` drops asserts: a runtime check must raise (or narrow the type) instead."""
    found = sorted(
        f"{module}:{node.lineno}"
        for module, path in sources().items()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Assert)
    )
    assert found == []
