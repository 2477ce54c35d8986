"""Field-by-field comparison of two value maps. Pure, standard library only.

Values are what specs, the ledger and the API hold (JSON-like), compared type-strictly with one
allowance: an int and a float are the same number when equal (`50` vs `50.0`: YAML ints, JSON
floats). A bool is not a number here (`1` vs `True` is a change), a string is never equal to a
number, a list never to a tuple. Lists that are sets (`models`, `output_paths`) are compared
without their order but with their repeats (`["a", "a"]` vs `["a"]` is a change), at every
depth of the field.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

Normalizer = Callable[[str, Any], Any]

_NUMBERS = (int, float)
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _same(field: str, normalize: Normalizer) -> Callable[[Any], Any]:
    def apply(value: Any) -> Any:
        if isinstance(value, list):
            return [normalize(field, v) for v in value]
        return normalize(field, value)

    return apply


def comparison_key(value: Any, *, unordered: bool = False) -> Hashable:
    """A hashable form of `value`: two values are equal for planning iff their keys are."""
    if isinstance(value, bool):
        return (bool, value)
    if isinstance(value, int | float):
        return (float, value)  # 50 and 50.0: equal numbers hash alike, so the keys are equal
    if isinstance(value, Mapping):
        return (
            dict,
            frozenset(
                (comparison_key(k), comparison_key(v, unordered=unordered))
                for k, v in value.items()
            ),
        )
    if isinstance(value, list | tuple):
        items = [comparison_key(v, unordered=unordered) for v in value]
        if unordered:
            return (type(value), "bag", frozenset(Counter(items).items()))
        return (type(value), tuple(items))
    try:
        hash(value)
    except TypeError:
        return (type(value), repr(value))
    return (type(value), value)


def alike(old: Any, new: Any) -> bool:
    """Given `old == new`: True when no bool stands for a number (or the reverse) inside."""
    kind = type(old)
    if kind is not type(new):
        return kind in _NUMBERS and type(new) in _NUMBERS  # 50 vs 50.0
    # Equal values of one plain type (most fields, most list items) are alike: no call.
    if isinstance(old, dict):
        for key, a in old.items():
            b = new[key]
            if (type(a) is not type(b) or type(a) not in _SCALARS) and not alike(a, b):
                return False
    elif kind is list or kind is tuple:
        for a, b in zip(old, new, strict=True):
            if (type(a) is not type(b) or type(a) not in _SCALARS) and not alike(a, b):
                return False
    return True


def values_differ(old: Any, new: Any, *, unordered: bool = False) -> bool:
    """True when `old` and `new` differ beyond int/float (and order, for sets): see the doc."""
    if old == new and alike(old, new):
        return False  # the common case, in C but for the walk over containers
    return comparison_key(old, unordered=unordered) != comparison_key(new, unordered=unordered)


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
        if type(before) in _SCALARS and before == after and type(before) is type(after):
            continue  # the most common case, in short
        as_set = key in unordered
        if not values_differ(before, after, unordered=as_set):
            continue  # the common case, without normalising
        fix = _same(key, norm)
        if values_differ(fix(before), fix(after), unordered=as_set):
            changed.append(key)
    return changed
