"""`load_stack`: spec files -> one validated Stack, or SpecErrors listing every problem.

    files -> YAML nodes (marks kept) -> variables -> Jinja over each string -> defaults merged
    under each resource -> pydantic per file -> project, duplicates, references, cycles -> Stack

Every problem is collected with the `file:line:col` of what the user wrote; they are raised
together, sorted by place, as one SpecErrors.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dumont_plan.errors import SpecError, SpecErrors, TemplateProblem
from dumont_plan.loader.datasets import check_datasets, check_workdirs
from dumont_plan.loader.inputs import discover, display_path, read_text, resolve_variables
from dumont_plan.loader.links import MODEL_OF_PREFIX, Decl, check_references
from dumont_plan.loader.templates import Renderer, needs_render
from dumont_plan.loader.yamlmarks import Doc, Loc, parse_yaml
from dumont_plan.secrets import SecretStore, default_secrets_files
from dumont_plan.spec.backend import BackendSpec
from dumont_plan.spec.common import SpecModel
from dumont_plan.spec.messages import describe, path_text
from dumont_plan.spec.refs import parse_address
from dumont_plan.spec.stack import KINDS, RESERVED_KINDS, Resource, Stack, StackSpec

OPTIONAL_SECTIONS = ("variables", "defaults", "backend", *KINDS)
# Read as written: a backend is found before templates or variables (as in Terraform).
UNRENDERED = ("variables", "backend")
PLACEHOLDER_PROJECT = "x"
_IMMUTABLE = frozenset({str, int, float, bool, type(None)})  # defaults merged without a copy


class _Load:
    def __init__(self, cwd: Path, env: Mapping[str, str], secrets: SecretStore | None) -> None:
        self.cwd = cwd
        self.env = env
        self.secrets = secrets
        self.errors: list[SpecError] = []
        self.docs: list[tuple[Doc, dict[str, Any]]] = []
        self.order: dict[str, int] = {}  # file as shown -> position, to sort errors
        self.decls: dict[str, Decl] = {}
        self.defaults: dict[str, dict[str, tuple[Any, Doc]]] = {p: {} for p in MODEL_OF_PREFIX}
        self.backend: tuple[Doc, BackendSpec] | None = None

    def fail(
        self, doc: Doc, loc: Loc, text: str, hint: str | None = None, key: bool = False
    ) -> None:
        label = path_text(loc)
        self.errors.append(doc.error(loc, f"{label}: {text}" if label else text, hint, key))

    def at(self, doc: Doc, loc: Loc, key: bool = False) -> str:
        line, col = doc.mark(loc, key=key)
        return f"{doc.file}:{line}:{col}"

    # -- files and templates ------------------------------------------------------------------

    def read(self, files: Sequence[Path]) -> bool:
        """Parse every file; False when one of them is unusable (unreadable, not YAML)."""
        usable = True
        for path in files:
            shown = display_path(path, self.cwd)
            self.order.setdefault(shown, len(self.order))
            try:
                text = read_text(path, shown)
            except SpecError as exc:
                self.errors.append(exc)
                usable = False
                continue
            doc = parse_yaml(text, shown, self.errors)
            if doc is None:
                usable = False
                continue
            if doc.data is None:
                doc.data = {}
            if not isinstance(doc.data, dict):
                self.fail(
                    doc,
                    (),
                    "expected a mapping at the top level (project:, jobs:, instances:, ...)",
                    "start the file with `project: NAME`",
                )
                usable = False
                continue
            for section in OPTIONAL_SECTIONS:  # `jobs:` with nothing under it is empty
                if section in doc.data and doc.data[section] is None:
                    del doc.data[section]
            self.docs.append((doc, doc.data))
        return usable

    def declared_variables(self) -> dict[str, Any]:
        """Each variable's default (rendered with `env` only), checked across files."""
        first: dict[str, tuple[Doc, Any]] = {}
        only_env = Renderer({}, self.env)
        for doc, top in self.docs:
            section = top.get("variables")
            if not isinstance(section, dict):
                continue
            for name, body in section.items():
                default = body.get("default") if isinstance(body, dict) else None
                loc: Loc = ("variables", name, "default")
                default = self.render(doc, default, loc, only_env)
                if name in first and first[name][1] != default:
                    self.fail(
                        doc,
                        ("variables", name),
                        "declared again with another default "
                        f"(first at {self.at(first[name][0], ('variables', name), key=True)})",
                        "declare each variable once",
                        key=True,
                    )
                first.setdefault(name, (doc, default))
        return {name: default for name, (_, default) in first.items()}

    def render(self, doc: Doc, value: Any, loc: Loc, renderer: Renderer) -> Any:
        if isinstance(value, str):
            if not needs_render(value):
                return value
            try:
                return renderer.render(value)
            except TemplateProblem as problem:
                line, col = doc.mark(loc)
                if problem.lineno and problem.lineno > 1:
                    line += problem.lineno - (0 if loc in doc.block else 1)
                label = path_text(loc)
                self.errors.append(
                    SpecError(
                        f"{label}: {problem.message}",
                        problem.hint,
                        file=doc.file,
                        line=line,
                        col=col,
                    )
                )
                return value
        if isinstance(value, dict):
            return {k: self.render(doc, v, (*loc, k), renderer) for k, v in value.items()}
        if isinstance(value, list):
            return [self.render(doc, v, (*loc, i), renderer) for i, v in enumerate(value)]
        return value

    # -- defaults and resources -------------------------------------------------------------

    def collect_defaults(self) -> None:
        for doc, top in self.docs:
            section = top.get("defaults")
            if not isinstance(section, dict):
                continue
            for prefix, model in MODEL_OF_PREFIX.items():
                body = section.get(prefix)
                if not isinstance(body, dict):
                    continue
                bad = self.validate_partial(doc, ("defaults", prefix), model, body)
                for key, value in body.items():
                    seen = self.defaults[prefix].get(key)
                    if seen is not None and seen[0] != value:
                        self.fail(
                            doc,
                            ("defaults", prefix, key),
                            f"set again with another value "
                            f"(first at {self.at(seen[1], ('defaults', prefix, key))})",
                            "set each default once",
                        )
                    elif seen is None and key not in bad:
                        self.defaults[prefix][key] = (value, doc)

    def validate_partial(
        self, doc: Doc, base: Loc, model: type[SpecModel], body: dict[str, Any]
    ) -> set[str]:
        """Validate defaults field by field (no whole-resource rules); the keys in error."""
        try:
            model.model_validate(body)
        except ValidationError as exc:
            bad: set[str] = set()
            for error in exc.errors(include_url=False):
                if not error["loc"] or error["loc"][0] not in body:
                    continue
                problem = describe(model, error)
                bad.add(str(error["loc"][0]))
                self.fail(doc, (*base, *problem.loc), problem.text, problem.hint, problem.on_key)
            return bad
        return set()

    def declare(self, doc: Doc, top: dict[str, Any]) -> dict[tuple[str, str], Decl]:
        """The file's resources merged with defaults; duplicates across files are errors."""
        mine: dict[tuple[str, str], Decl] = {}
        for section, (prefix, _) in KINDS.items():
            resources = top.get(section)
            if not isinstance(resources, dict):
                continue
            for name, body in list(resources.items()):
                if body is None:
                    body = resources[name] = {}
                if not isinstance(body, dict):
                    continue
                # Where the keys taken from defaults were written (a key of the body is
                # where Decl.where looks by default).
                origins: dict[str, tuple[Doc, Loc]] = {}
                merged: dict[str, Any] = {}
                for key, (value, where) in self.defaults[prefix].items():
                    if key not in body:
                        # A copy per resource, but text, numbers and booleans need none.
                        plain = type(value) in _IMMUTABLE
                        merged[key] = value if plain else copy.deepcopy(value)
                        origins[key] = (where, ("defaults", prefix, key))
                merged.update(body)
                decl = Decl(section, prefix, name, doc, merged, origins)
                other = self.decls.get(decl.address)
                if other is not None:
                    self.fail(
                        doc,
                        (section, name),
                        f"{decl.address} is already declared at "
                        f"{self.at(other.doc, (section, name), key=True)}",
                        "rename one of them or remove the duplicate",
                        key=True,
                    )
                else:
                    self.decls[decl.address] = decl
                mine[(section, name)] = decl
        return mine

    def validate_file(self, doc: Doc, top: dict[str, Any]) -> None:
        mine = self.declare(doc, top)
        data = dict(top)
        for section in KINDS:
            if isinstance(data.get(section), dict):
                data[section] = {
                    name: mine[(section, name)].body if (section, name) in mine else body
                    for name, body in data[section].items()
                }
        data.setdefault("project", PLACEHOLDER_PROJECT)
        try:
            validated = StackSpec.model_validate(data)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                self.report(doc, error, mine)
            return
        for (section, name), decl in mine.items():
            decl.spec = getattr(validated, section)[name]
        if validated.backend is not None:
            self.keep_backend(doc, validated.backend)

    def keep_backend(self, doc: Doc, backend: BackendSpec) -> None:
        """One backend per stack: the same block in two files is fine, two different not."""
        if self.backend is None:
            self.backend = (doc, backend)
        elif self.backend[1] != backend:
            self.fail(
                doc,
                ("backend",),
                f"differs from the backend at {self.at(self.backend[0], ('backend',), key=True)}",
                "declare `backend:` in one file",
                key=True,
            )

    def read_backend(self) -> None:
        """Validate only each file's `backend:` block (see `load_backend`)."""
        for doc, top in self.docs:
            body = top.get("backend")
            if body is None:
                continue
            try:
                backend = BackendSpec.model_validate(body)
            except ValidationError as exc:
                for error in exc.errors(include_url=False):
                    problem = describe(BackendSpec, error)
                    self.fail(
                        doc, ("backend", *problem.loc), problem.text, problem.hint, problem.on_key
                    )
                continue
            self.keep_backend(doc, backend)

    def report(self, doc: Doc, error: Any, mine: dict[tuple[str, str], Decl]) -> None:
        loc = tuple(error["loc"])
        if error["type"] == "extra_forbidden" and len(loc) == 1 and loc[0] in RESERVED_KINDS:
            supported = ", ".join(KINDS)
            self.fail(
                doc,
                loc,
                "not supported yet by this version of dumont",
                f"supported sections: {supported}; remove it or upgrade dumont",
                key=True,
            )
            return
        problem = describe(StackSpec, error)
        loc = problem.loc
        decl = mine.get((str(loc[0]), str(loc[1]))) if len(loc) >= 2 else None
        if decl is not None and len(loc) >= 3:
            if decl.from_defaults(loc[2]):
                return  # reported once, at the default
            target, loc = decl.where(loc[2:])
            self.fail(target, loc, problem.text, problem.hint, problem.on_key)
            return
        if decl is not None:  # a rule about the whole resource: point at its name
            self.fail(doc, loc, problem.text, problem.hint, key=True)
            return
        self.fail(doc, loc, problem.text, problem.hint, problem.on_key)

    # -- whole stack --------------------------------------------------------------------------

    def project(self) -> str:
        found = [(doc, top["project"]) for doc, top in self.docs if "project" in top]
        if not found:
            if self.docs:
                doc = self.docs[0][0]
                self.errors.append(
                    SpecError(
                        "missing required field 'project'",
                        f"add `project: NAME` at the top of {doc.file}",
                        file=doc.file,
                        line=1,
                        col=1,
                    )
                )
            return PLACEHOLDER_PROJECT
        first_doc, first = found[0]
        for doc, value in found[1:]:
            if value != first:
                self.fail(
                    doc,
                    ("project",),
                    f"{value!r} differs from {first!r} set at {self.at(first_doc, ('project',))}",
                    "one stack has one project; make them equal",
                )
        return str(first)

    def raise_errors(self) -> None:
        if not self.errors:
            return
        order = self.order
        unique: dict[str, SpecError] = {}
        for error in self.errors:
            unique.setdefault(str(error), error)
        errors = sorted(
            unique.values(),
            key=lambda e: (
                e.file is not None,
                order.get(e.file or "", len(order)),
                e.file or "",
                e.line or 0,
                e.col or 0,
            ),
        )
        raise SpecErrors(errors)


def load_stack(
    paths: Sequence[Path] | None,
    cwd: Path,
    variables: Mapping[str, str] | None = None,
    var_files: Sequence[Path] = (),
    env: Mapping[str, str] | None = None,
    *,
    check_secrets: bool = False,
) -> Stack:
    """Load, render and validate the spec files into one Stack (see the module doc).

    paths: `-f` values (files or folders), or None/[] for dumont.yaml|dumont.yml|dumontfile in
    `cwd`; variables: `--var` values; var_files: `--var-file` paths (relative to `cwd`);
    env: the environment for `{{ env.X }}` and `DUMONT_VAR_*` (default: os.environ);
    check_secrets: also report every `${secret.NAME}` that is not set (values are not kept).
    Raises SpecError (SpecErrors when the files have problems, with every one of them).
    """
    env = os.environ if env is None else env
    files = discover(paths, cwd)
    store = SecretStore(env, default_secrets_files(files[0].resolve().parent))
    load = _Load(cwd, env, store if check_secrets else None)
    if not load.read(files):  # with a file missing, anything else found now would be noise
        load.raise_errors()
    declared = load.declared_variables()
    try:
        warnings: list[str] = []
        values = resolve_variables(declared, env, var_files, variables or {}, cwd, warnings)
    except SpecError as exc:
        load.errors.append(exc)
        load.raise_errors()
        raise
    renderer = Renderer(values, env)
    for doc, top in load.docs:
        for key in list(top) if doc.templated else ():
            if key not in UNRENDERED:
                top[key] = load.render(doc, top[key], (key,), renderer)
    load.collect_defaults()
    for doc, top in load.docs:
        load.validate_file(doc, top)
    project = load.project()
    check_references(load.decls, load.fail, load.secrets)
    root = files[0].resolve().parent
    check_datasets(load.decls, load.fail, cwd, root)
    check_workdirs(load.decls, load.fail, cwd, root)
    load.raise_errors()
    resources: dict[str, Resource] = {}
    for address, decl in load.decls.items():
        if decl.spec is None:  # no errors were reported, so every file validated
            raise RuntimeError(f"{address} was never validated, yet no error was reported")
        if getattr(decl.spec, "depends_on", None):  # `jobs.a` -> `job.a`, as in refs
            decl.spec.depends_on = [parse_address(a) for a in decl.spec.depends_on]  # type: ignore[attr-defined]
        line, _ = decl.doc.mark((decl.section, decl.name), key=True)
        resources[address] = Resource(
            kind=decl.prefix,
            name=decl.name,
            spec=decl.spec,
            source=f"{decl.doc.file}:{line}",
            refs=tuple(sorted(decl.deps)),
        )
    return Stack(
        project=project,
        resources=resources,
        files=[doc.file for doc, _ in load.docs],
        root=root,
        variables=values,
        warnings=warnings,
        backend=load.backend[1] if load.backend else None,
    )


def load_backend(
    paths: Sequence[Path] | None, cwd: Path
) -> tuple[BackendSpec | None, str | None, Path]:
    """The spec's `backend:` block, its `project:` and the spec's folder, without loading
    the rest (the state commands need only these; a spec being edited need not be valid).
    Raises SpecError (no spec file; the backend block is not valid)."""
    files = discover(paths, cwd)
    load = _Load(cwd, os.environ, None)
    if not load.read(files):
        load.raise_errors()
    load.read_backend()
    load.raise_errors()
    projects = [top["project"] for _, top in load.docs if isinstance(top.get("project"), str)]
    backend = load.backend[1] if load.backend else None
    return backend, (projects[0] if projects else None), files[0].resolve().parent
