"""plan/diff.py: type-strict comparison, int and float alike, sets with their repeats."""

from __future__ import annotations

from typing import Any

import pytest

from dumont_plan.plan.diff import changed_fields, values_differ


@pytest.mark.parametrize(
    ("old", "new", "unordered"),
    [
        (1, True, False),
        (0, False, False),
        (1.0, True, False),
        ([1], [True], False),
        ({"a": 1}, {"a": True}, False),
        ({"a": [1]}, {"a": [True]}, True),
        (["a", "a"], ["a"], True),
        (["a"], ["a", "a"], True),
        (["a", "a", "b"], ["a", "b", "b"], True),
        (["a", "a"], ["a"], False),
        ([1, 2], [2, 1], False),
        ("1", 1, False),
        (None, 0, False),
        (None, "", False),
        ([1], (1,), False),
        ({"a": 1}, {"a": 1, "b": None}, False),
        ("x", "X", False),
    ],
)
def test_these_differ(old: Any, new: Any, unordered: bool) -> None:
    assert values_differ(old, new, unordered=unordered)
    assert values_differ(new, old, unordered=unordered)


@pytest.mark.parametrize(
    ("old", "new", "unordered"),
    [
        (50, 50.0, False),
        ([1, 2], [1, 2.0], True),
        ([1, 2], [2, 1], True),
        (["a", "a", "b"], ["a", "b", "a"], True),
        ([[1, 2], [3]], [[3], [2, 1]], True),
        ([{"k": [1, 2]}], [{"k": [2, 1]}], True),
        ({"a": 1, "b": [True]}, {"b": [True], "a": 1.0}, False),
        (True, True, False),
        (None, None, False),
        ([], [], True),
    ],
)
def test_these_are_equal(old: Any, new: Any, unordered: bool) -> None:
    assert not values_differ(old, new, unordered=unordered)
    assert not values_differ(new, old, unordered=unordered)


def test_changed_fields_normalises_sets_and_keeps_key_order() -> None:
    def fold(_field: str, value: Any) -> Any:
        return value.casefold() if isinstance(value, str) else value

    old = {"paths": ["/A", "/b"], "spot": 1, "name": "X", "gone": 1}
    new = {"paths": ["/B", "/a"], "spot": True, "name": "x", "added": 2}
    keys = ["spot", "paths", "name", "added", "gone"]
    assert changed_fields(old, new, keys, unordered=frozenset({"paths"}), normalize=fold) == [
        "spot",
        "gone",
    ]
    assert changed_fields(old, new, keys, normalize=fold) == ["spot", "paths", "gone"]
    repeated = {"paths": ["/a", "/a"]}
    assert changed_fields(
        repeated, {"paths": ["/A"]}, ["paths"], normalize=fold, unordered=frozenset({"paths"})
    ) == ["paths"]
