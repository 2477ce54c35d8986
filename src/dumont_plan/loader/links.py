"""References between resources: `${kind.name.attr}`, `depends_on`, `${secret.NAME}`.

Checks every reference of every declared resource (kind, attribute, address, secret syntax and,
when asked, that the secret is set), records the edges in `Decl.deps` with where each is
written, and reports a dependency cycle with its path. Problems go through `fail`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from dumont_plan.errors import CycleError
from dumont_plan.loader.yamlmarks import Doc, Loc
from dumont_plan.secrets import SecretStore
from dumont_plan.spec.common import SECRET_NAME_RE, SpecModel
from dumont_plan.spec.graph import check_acyclic
from dumont_plan.spec.messages import suggest
from dumont_plan.spec.refs import SECRET_KIND, Ref, find_refs, parse_address, refs_in
from dumont_plan.spec.stack import KINDS

MODEL_OF_PREFIX: dict[str, type[SpecModel]] = {prefix: model for prefix, model in KINDS.values()}
Fail = Callable[..., None]  # fail(doc, loc, text, hint=None, key=False)


@dataclass
class Decl:
    """A declared resource: its body merged with defaults, and where each key was written."""

    section: str
    prefix: str
    name: str
    doc: Doc
    body: dict[str, Any]
    origins: dict[str, tuple[Doc, Loc]]  # key -> (file, loc) of a value not in the body
    spec: BaseModel | None = None
    deps: dict[str, tuple[Doc, Loc]] = field(default_factory=dict)  # address -> where referenced

    @property
    def address(self) -> str:
        return f"{self.prefix}.{self.name}"

    def where(self, loc: Loc) -> tuple[Doc, Loc]:
        if loc and isinstance(loc[0], str) and loc[0] in self.origins:
            doc, base = self.origins[loc[0]]
            return doc, (*base, *loc[1:])
        return self.doc, (self.section, self.name, *loc)

    def from_defaults(self, key: str | int) -> bool:
        origin = self.origins.get(str(key))
        return origin is not None and origin[1][0] == "defaults"


def check_references(decls: dict[str, Decl], fail: Fail, secrets: SecretStore | None) -> None:
    """References and depends_on: known kinds, attributes and addresses; no cycle."""
    for decl in decls.values():
        for path, ref in find_refs(decl.body):
            if path[:1] == ("depends_on",):
                continue  # addresses, checked below
            doc, loc = decl.where(path)
            if ref.kind == SECRET_KIND:
                if ref.attr is not None or not SECRET_NAME_RE.match(ref.name):
                    fail(
                        doc,
                        loc,
                        f"bad secret reference {ref.text}",
                        "write ${secret.NAME}, NAME in letters, digits and '_'",
                    )
                elif secrets is not None and secrets.lookup(ref.name) is None:
                    fail(
                        doc,
                        loc,
                        f"secret {ref.name} is not set",
                        secrets.missing_hint(ref.name),
                    )
                continue
            _check_ref(decls, fail, decl, doc, loc, ref)
        depends = decl.body.get("depends_on")
        if isinstance(depends, list):
            for index, item in enumerate(depends):
                if not isinstance(item, str):
                    continue  # a type error, reported by validation
                doc, loc = decl.where(("depends_on", index))
                if "${" in item:
                    fail(doc, loc, "depends_on takes addresses", "write e.g. job.prepare")
                    continue
                try:
                    address = parse_address(item)
                except ValueError as exc:
                    fail(doc, loc, str(exc))
                    continue
                _link(decls, fail, decl, address, doc, loc, f"depends on {address}")
        _check_ignore_changes(fail, decl)
    _check_unique(decls, fail)
    graph = {address: sorted(d.deps) for address, d in decls.items()}
    try:
        check_acyclic(graph)
    except CycleError as exc:
        cycle = exc.cycle
        doc, loc = decls[cycle[0]].deps[cycle[1]]
        fail(
            doc,
            loc,
            "dependency cycle " + " -> ".join(cycle),
            "remove one of these references or depends_on entries",
        )


def _check_ref(
    decls: dict[str, Decl], fail: Fail, decl: Decl, doc: Doc, loc: Loc, ref: Ref
) -> None:
    kind, name, attr, text = ref.kind, ref.name, ref.attr, ref.text
    if kind in ("var", "env"):
        fail(doc, loc, f"{text} is not a reference", f"write {{{{ {kind}.{name} }}}}")
        return
    model = MODEL_OF_PREFIX.get(kind)
    if model is None:
        words = [*MODEL_OF_PREFIX, SECRET_KIND]
        guess = suggest(kind, words)
        fail(
            doc,
            loc,
            f"unknown kind '{kind}' in {text}",
            f"did you mean '{guess}'?"
            if guess
            else "references look like ${job.NAME.id} or ${instance.NAME.id}",
        )
        return
    attrs = sorted(getattr(model, "REF_ATTRS", ()))
    if attr is None:
        fail(doc, loc, f"{text} names no attribute", f"e.g. ${{{kind}.{name}.id}}")
        return
    if attr not in attrs:
        guess = suggest(attr, attrs)
        fail(
            doc,
            loc,
            f"unknown attribute '{attr}' in {text}",
            f"did you mean '{guess}'?" if guess else f"use one of: {', '.join(attrs)}",
        )
        return
    _link(decls, fail, decl, f"{kind}.{name}", doc, loc, f"{text} refers to {kind}.{name}")


def _link(
    decls: dict[str, Decl], fail: Fail, decl: Decl, address: str, doc: Doc, loc: Loc, what: str
) -> None:
    if address not in decls:
        kind, _, name = address.partition(".")
        same_kind = [d.name for d in decls.values() if d.prefix == kind]
        guess = suggest(name, same_kind)
        fail(
            doc,
            loc,
            f"{what}, which is not declared",
            f"did you mean '{kind}.{guess}'?" if guess else "declare it, or fix the name",
        )
        return
    decl.deps.setdefault(address, (doc, loc))


def _check_ignore_changes(fail: Fail, decl: Decl) -> None:
    lifecycle = decl.body.get("lifecycle")
    if not isinstance(lifecycle, dict) or not isinstance(lifecycle.get("ignore_changes"), list):
        return
    fields = [f for f in MODEL_OF_PREFIX[decl.prefix].model_fields if f != "lifecycle"]
    for index, item in enumerate(lifecycle["ignore_changes"]):
        if isinstance(item, str) and item not in fields:
            doc, loc = decl.where(("lifecycle", "ignore_changes", index))
            guess = suggest(item, fields)
            fail(
                doc,
                loc,
                f"unknown field '{item}'",
                f"did you mean '{guess}'?" if guess else f"use one of: {', '.join(fields)}",
            )


def _check_unique(decls: dict[str, Decl], fail: Fail) -> None:
    """A model's `UNIQUE_FIELDS` take a different value in each resource of its kind (one
    serverless policy per instance)."""
    seen: dict[tuple[str, str, str], str] = {}
    for decl in decls.values():
        for name in getattr(MODEL_OF_PREFIX.get(decl.prefix), "UNIQUE_FIELDS", ()):
            value = decl.body.get(name)
            if not isinstance(value, str | int) or isinstance(value, bool):
                continue
            refs = refs_in(value) if isinstance(value, str) else []
            same = f"{refs[0].address}.{refs[0].attr}" if len(refs) == 1 else str(value).strip()
            key = (decl.prefix, name, same)
            first = seen.setdefault(key, decl.address)
            if first != decl.address:
                doc, loc = decl.where((name,))
                fail(
                    doc,
                    loc,
                    f"{name} {value} is already taken by {first}",
                    f"one {decl.prefix} per {name}: merge the two or point this one elsewhere",
                )
