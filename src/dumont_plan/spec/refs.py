"""References inside spec values: `${job.train.id}` (resolved at apply time) and `${secret.X}`.

    find_refs({"command": "ssh ${instance.box.ssh_host}"})
        -> [(("command",), Ref(kind="instance", name="box", attr="ssh_host", ...))]
    substitute_refs(spec, lambda ref: live[ref.address][ref.attr])

A reference may name its kind by the address prefix (`job`, `instance`) or by the section
(`jobs`, `instances`); both normalise to the prefix. `${secret.NAME}` is a Ref of kind
`secret`; `substitute_refs` leaves it in place for `secrets.resolve_secrets`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from dumont_plan.spec.common import REF_RE
from dumont_plan.spec.stack import KINDS

SECRET_KIND = "secret"
Path = tuple[str | int, ...]

# "job" -> "job", "jobs" -> "job", ...
KIND_WORDS: dict[str, str] = {}
for _section, (_prefix, _model) in KINDS.items():
    KIND_WORDS[_section] = _prefix
    KIND_WORDS[_prefix] = _prefix


@dataclass(frozen=True)
class Ref:
    """One `${...}` occurrence."""

    kind: str  # normalised: "job", "instance", ... or "secret"; the word as written if unknown
    name: str
    attr: str | None
    text: str  # exactly as written, e.g. "${jobs.train.id}"

    @property
    def address(self) -> str:
        return f"{self.kind}.{self.name}"

    @property
    def is_secret(self) -> bool:
        return self.kind == SECRET_KIND


def normalise_kind(word: str) -> str | None:
    """`jobs` or `job` -> `job`; `secret` stays; None for an unknown word."""
    if word == SECRET_KIND:
        return SECRET_KIND
    return KIND_WORDS.get(word)


def parse_address(text: str) -> str:
    """`job.train` or `jobs.train` -> `job.train`; ValueError with the reason otherwise."""
    kind_word, dot, name = text.strip().partition(".")
    if not dot or not name or "." in name:
        raise ValueError(f"'{text}' is not an address; write KIND.NAME, e.g. job.train")
    kind = KIND_WORDS.get(kind_word)
    if kind is None:
        kinds = ", ".join(prefix for prefix, _ in KINDS.values())
        raise ValueError(f"'{text}' names an unknown kind '{kind_word}'; use one of: {kinds}")
    return f"{kind}.{name}"


def iter_strings(value: Any, path: Path = ()) -> Iterator[tuple[Path, str]]:
    """Every string inside nested dicts and lists, with its path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from iter_strings(item, (*path, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from iter_strings(item, (*path, index))


def refs_in(text: str) -> list[Ref]:
    """The references written in one string."""
    if "${" not in text:
        return []
    refs = []
    for match in REF_RE.finditer(text):
        word, name, attr = match.group(1), match.group(2), match.group(3)
        refs.append(Ref(normalise_kind(word) or word, name, attr, match.group(0)))
    return refs


def find_refs(value: Any) -> list[tuple[Path, Ref]]:
    """Every reference (secrets included) inside a value, with the path of its string."""
    found: list[tuple[Path, Ref]] = []
    _find_refs(value, (), found)
    return found


def _find_refs(value: Any, path: Path, found: list[tuple[Path, Ref]]) -> None:
    """iter_strings + refs_in, in the same order, making a path only for a string with `${`
    or a container (the loader looks through every value of every resource)."""
    if isinstance(value, str):
        found.extend((path, ref) for ref in refs_in(value))
        return
    if isinstance(value, dict):
        items: Iterable[tuple[str | int, Any]] = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return
    for key, item in items:
        if not isinstance(item, str):
            _find_refs(item, (*path, key), found)
        elif "${" in item:
            found.extend(((*path, key), ref) for ref in refs_in(item))


def substitute_refs(value: Any, resolve: Callable[[Ref], Any]) -> Any:
    """A copy of `value` with each non-secret reference replaced by `resolve(ref)`.

    A string that is exactly one reference becomes the resolved value itself (an instance id
    stays an integer); a reference inside longer text is replaced by `str(resolved)`.
    """
    if isinstance(value, dict):
        return {key: substitute_refs(item, resolve) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute_refs(item, resolve) for item in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = REF_RE.fullmatch(value.strip())
    if whole:
        ref = refs_in(value.strip())[0]
        return value if ref.is_secret else resolve(ref)

    def _one(match: Any) -> str:
        ref = refs_in(match.group(0))[0]
        return str(match.group(0)) if ref.is_secret else str(resolve(ref))

    return REF_RE.sub(_one, value)
