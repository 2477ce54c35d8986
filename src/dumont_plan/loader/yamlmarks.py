"""YAML text -> plain data plus the `line:col` of every value and key (for error messages).

    doc = parse_yaml(text, "dumont.yaml")
    doc.data                      {"jobs": {"train": {"num_gpus": 9}}}
    doc.mark(("jobs", "train", "num_gpus"))      (4, 15)   1-based line and column
    doc.mark(("jobs", "train"), key=True)        (3, 3)    where the key is written

Parsing composes the node tree (PyYAML's C loader when available) and builds the data from it,
so nothing is lost between what the user wrote and where it is. Keys are the text written
(`yes:` is the key "yes", not true); duplicate keys, recursive aliases and alias bombs are errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from dumont_plan.errors import SpecError, TooManyNodes

try:
    _Loader: type[Any] = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader

STR_TAG = "tag:yaml.org,2002:str"
MERGE_TAG = "tag:yaml.org,2002:merge"
MAX_DEPTH = 64
MAX_NODES = 1_000_000  # values built per file, aliases expanded: stops "billion laughs"

Loc = tuple[str | int, ...]

YAML_HINTS = (
    ("cannot start any token", "check for a stray character such as '@', '`' or a tab"),
    ("mapping values are not allowed", "quote a value that contains ': ', or fix the indentation"),
    ("could not find expected ':'", "check the indentation of this line and the one above"),
    ("did not find expected key", "check the indentation; list items start with '- '"),
    ("did not find expected '-'", "check the indentation of this list"),
    ("found unexpected end of stream", "close the quote or bracket opened earlier"),
    ("found undefined alias", "define the anchor (&name) before using *name"),
    ("found duplicate anchor", "give each anchor (&name) a different name"),
    ("expected a single document", "keep one document per file (remove '---')"),
    ("did not find expected node content", "close the bracket or remove the stray comma"),
    ("did not find expected ',' or", "separate items with ', ' and close the bracket"),
)


@dataclass
class Doc:
    """One parsed YAML file."""

    file: str  # as displayed in messages
    data: Any = None
    marks: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    block: set[Loc] = field(default_factory=set)  # strings written as | or > blocks
    # False when no value can hold a template (`{{`, `{%`): the text has none and no escape
    # that could spell one; then the values are not walked to render them.
    templated: bool = True

    def mark(self, loc: Loc, key: bool = False) -> tuple[int, int]:
        """Where the value (or the key) at `loc` is written; the nearest parent when unknown."""
        if key and loc in self.key_marks:
            return self.key_marks[loc]
        while loc:
            if loc in self.marks:
                return self.marks[loc]
            loc = loc[:-1]
        return self.marks.get((), (1, 1))

    def error(self, loc: Loc, text: str, hint: str | None = None, key: bool = False) -> SpecError:
        line, col = self.mark(loc, key=key)
        return SpecError(text, hint, file=self.file, line=line, col=col)


def _point(mark: Any) -> tuple[int, int]:
    return int(mark.line) + 1, int(mark.column) + 1


def _has_tab_indent(text: str, line: int) -> int | None:
    """Column (1-based) of a tab in the indentation of `line` (1-based), if any."""
    lines = text.splitlines()
    if not 1 <= line <= len(lines):
        return None
    content = lines[line - 1]
    indent = content[: len(content) - len(content.lstrip(" \t"))]
    return indent.index("\t") + 1 if "\t" in indent else None


def syntax_error(exc: yaml.YAMLError, text: str, file: str) -> SpecError:
    """A PyYAML error as one located message with a fix."""
    if isinstance(exc, yaml.reader.ReaderError):
        before = text[: exc.position]
        line = before.count("\n") + 1
        col = exc.position - (before.rfind("\n") + 1) + 1
        char = chr(exc.character) if isinstance(exc.character, int) else str(exc.character)
        return SpecError(
            f"character {char!r} is not allowed in YAML",
            "remove it or write it escaped inside double quotes",
            file=file,
            line=line,
            col=col,
        )
    mark: Any = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line, col = _point(mark) if mark is not None else (1, 1)
    problem = str(getattr(exc, "problem", None) or getattr(exc, "context", None) or exc)
    context_mark: Any = getattr(exc, "context_mark", None)
    at_end = mark is not None and not text[mark.index :].strip()
    if at_end and context_mark is not None and context_mark.index < mark.index:
        # Hit the end of the file: point at what was left open (a quote, a bracket).
        line, col = _point(context_mark)
        problem += f" ({exc.context} that starts here)"  # type: ignore[attr-defined]
    for check in (line, line - 1):
        tab_col = _has_tab_indent(text, check)
        if tab_col is not None:
            return SpecError(
                "tab character in indentation",
                "YAML indents with spaces only; replace the tab with spaces",
                file=file,
                line=check,
                col=tab_col,
            )
    hint = next((fix for needle, fix in YAML_HINTS if needle in problem), "check the YAML syntax")
    return SpecError(f"YAML syntax error: {problem}", hint, file=file, line=line, col=col)


class _Builder:
    def __init__(self, doc: Doc, errors: list[SpecError]) -> None:
        self.doc = doc
        self.errors = errors
        self.constructor = SafeConstructor()
        self.active: set[int] = set()
        self.count = 0

    def fail(self, node: Node, text: str, hint: str | None = None) -> None:
        line, col = _point(node.start_mark)
        self.errors.append(SpecError(text, hint, file=self.doc.file, line=line, col=col))

    def build(self, node: Node, loc: Loc) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise TooManyNodes(node)
        mark = node.start_mark
        self.doc.marks[loc] = (mark.line + 1, mark.column + 1)  # _point, inline: every value
        if isinstance(node, ScalarNode):
            if node.tag == STR_TAG and node.style not in ("|", ">"):
                return node.value  # most values: plain text (scalar(), without the call)
            return self.scalar(node, loc)
        if len(loc) > MAX_DEPTH:
            self.fail(node, f"nested more than {MAX_DEPTH} levels deep", "flatten the structure")
            return None
        if id(node) in self.active:
            self.fail(node, "an alias refers to its own parent", "remove the recursive alias")
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self.build(child, (*loc, i)) for i, child in enumerate(node.value)]
            if isinstance(node, MappingNode):
                return self.mapping(node, loc)
        finally:
            self.active.discard(id(node))
        self.fail(node, "unsupported YAML node")
        return None

    def scalar(self, node: ScalarNode, loc: Loc) -> Any:
        if node.tag == STR_TAG:
            if node.style in ("|", ">"):
                self.doc.block.add(loc)
            return node.value
        try:
            return self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            self.fail(node, f"cannot read this value: {problem}", "quote it to make it a string")
            return None

    def mapping(self, node: MappingNode, loc: Loc) -> dict[str, Any]:
        first: dict[str, tuple[int, int]] = {}
        duplicates: set[int] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == MERGE_TAG:
                continue
            where = _point(key_node.start_mark)
            if key_node.value in first:
                duplicates.add(id(key_node))
                self.fail(
                    key_node,
                    f"duplicate key '{key_node.value}' (first at line {first[key_node.value][0]})",
                    "keep only one of them",
                )
            else:
                first[key_node.value] = where
        try:
            self.constructor.flatten_mapping(node)  # `<<: *anchor` merge keys, then own keys
        except yaml.YAMLError as exc:
            self.fail(node, f"bad merge key: {getattr(exc, 'problem', exc)}")
            return {}
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.fail(key_node, "a key must be a plain word", "write `name: value`")
                continue
            if id(key_node) in duplicates:
                continue
            key = key_node.value
            at = (*loc, key)
            self.doc.key_marks[at] = _point(key_node.start_mark)
            result[key] = self.build(value_node, at)  # own keys override merged ones
        return result


def parse_yaml(text: str, file: str, errors: list[SpecError]) -> Doc | None:
    """Parse one YAML document; problems go to `errors` (None when the text is unusable)."""
    doc = Doc(file, templated="{{" in text or "{%" in text or "\\" in text)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        errors.append(syntax_error(exc, text, file))
        return None
    except RecursionError:
        errors.append(SpecError("nested too deeply", file=file, line=1, col=1))
        return None
    if node is None:
        return doc
    builder = _Builder(doc, errors)
    try:
        doc.data = builder.build(node, ())
    except TooManyNodes as exc:
        line, col = _point(exc.node.start_mark)
        errors.append(
            SpecError(
                f"the file expands to more than {MAX_NODES} values",
                "use fewer aliases (*name)",
                file=file,
                line=line,
                col=col,
            )
        )
        return None
    return doc
