"""Field-by-field comparison of two value maps (the only place that imports deepdiff). Pure.

deepdiff handles what a plain `==` gets wrong for specs: `50` vs `50.0` (YAML ints, JSON
floats), and lists that are sets (`models`, `output_paths`) compared without their order.
It is imported only when two values are not plainly equal: most plans (nothing changed)
never need it, and importing it costs 25-50 ms of every `dumont plan`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

Normalizer = Callable[[str, Any], Any]


def _same(field: str, normalize: Normalizer) -> Callable[[Any], Any]:
    def apply(value: Any) -> Any:
        if isinstance(value, list):
            return [normalize(field, v) for v in value]
        return normalize(field, value)

    return apply


def values_differ(old: Any, new: Any, *, unordered: bool = False) -> bool:
    """True when `old` and `new` differ beyond number types (and order, for sets)."""
    if old == new and type(old) is type(new):
        return False
    from deepdiff import DeepDiff  # see the module doc

    diff = DeepDiff(
        old,
        new,
        ignore_order=unordered,
        ignore_numeric_type_changes=True,
    )
    return bool(diff)


def changed_fields(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    keys: Iterable[str],
    *,
    unordered: frozenset[str] = frozenset(),
    normalize: Normalizer | None = None,
) -> list[str]:
    """The keys whose values differ, in `keys` order.

    A key absent from `old` is not compared (nothing is known about it: e.g. a field added by a
    newer dumont after the resource was applied).
    """
    norm: Normalizer = normalize or (lambda _field, value: value)
    changed = []
    for key in keys:
        if key not in old:
            continue
        before, after = old[key], new.get(key)
        if before == after and type(before) is type(after):
            continue  # the common case, without normalising
        fix = _same(key, norm)
        if values_differ(fix(before), fix(after), unordered=key in unordered):
            changed.append(key)
    return changed
